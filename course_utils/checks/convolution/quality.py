"""The quality check of the trained ``SmallCNN``: its accuracy on new Shapes-world images that
the check renders itself, at least ``CNN_THRESHOLD``."""

from __future__ import annotations

import torch
from torch import nn

from course_utils.checks.case import Case, Outputs
from course_utils.checks.core import QualityCheck
from course_utils.data import CLASSES, ShapesClassification

#: The graded figure and its threshold.
CNN_ACCURACY = "SmallCNN held-out accuracy"
CNN_THRESHOLD = 0.95


def _cnn_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    """New test-split images of all 15 classes, rendered from a seed of the check's own."""
    seed = int(torch.randint(1000, 2**31 - 1, (1,), generator=generator))
    size = 1500 if hidden else 600
    test = ShapesClassification("test", size=size, seed=seed, hold_out=False)
    return [Case(f"{size} new single-object Shapes-world images, 15 classes (seed {seed})",
                 {"images": test.images}, private={"labels": test.labels})]


def _cnn_run(model, case: Case) -> Outputs:
    """The model's logits on the case's images, in batches of 500, on the model's device."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected the trained model (an nn.Module), got {type(model).__name__}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    model.eval()  # BatchNorm and Dropout in inference mode
    images = case.inputs["images"]
    logits = []
    for start in range(0, len(images), 500):
        out = model(images[start:start + 500].to(device))
        if type(out) is not torch.Tensor:
            raise TypeError(f"the model returned {type(out).__name__}, expected logits "
                            "(B, 15)")
        logits.append(out.detach().float().cpu())
    return {"output": torch.cat(logits)}


def _cnn_score(case: Case, outputs: Outputs) -> dict[str, float]:
    logits, labels = outputs["output"], case.private["labels"]
    expected = (len(labels), len(CLASSES))
    if type(logits) is not torch.Tensor or tuple(logits.shape) != expected:
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise ValueError(f"expected logits of shape {expected}, got {shape}")
    correct = logits.argmax(dim=1).cpu() == labels
    return {CNN_ACCURACY: correct.float().mean().item()}


small_cnn = QualityCheck(
    exercise="SmallCNN",
    cases=_cnn_cases,
    run=_cnn_run,
    score=_cnn_score,
    thresholds={CNN_ACCURACY: CNN_THRESHOLD},
    hint="check that forward returns one logit per class (B, 15) without a softmax (the "
         "cross-entropy applies it), that every block has its BatchNorm, and train again "
         "(run the training cell once, from a freshly built model).",
)
