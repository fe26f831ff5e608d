"""The quality check of the trained ViT: its accuracy on held-out Shapes images the check
renders itself (the 15 colour-shape classes), graded at ≥ 95 %."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from course_utils.checks.case import Case, Outputs
from course_utils.checks.core import QualityCheck
from course_utils.checks.vit._shared import forbidden

#: Held-out images the quality check renders: the Shapes world's 15 colour–shape classes.
QUALITY_IMAGES = {"visible": 750, "hidden": 1500}


def _quality_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    from course_utils.data import ShapesClassification

    seed = 10_000 + int(torch.randint(0, 1_000_000, (1,), generator=generator))
    size = QUALITY_IMAGES["hidden" if hidden else "visible"]
    held_out = ShapesClassification("test", size=size, seed=seed, hold_out=False)
    return [Case(f"{size} held-out 32×32 Shapes images (test split, seed {seed})",
                 {"images": held_out.images}, private={"labels": held_out.labels})]


def _model_device(model: Any) -> torch.device:
    if isinstance(model, nn.Module):
        for tensor in model.parameters():
            return tensor.device
    return torch.device("cpu")


def _run_classifier(model: Any, case: Case) -> Outputs:
    """Logits of the model on the case's images, in batches of 250, on the model's device."""
    device = _model_device(model)
    images = case.inputs["images"]
    logits = [model(images[i:i + 250].to(device)) for i in range(0, len(images), 250)]
    if not all(type(x) is torch.Tensor for x in logits):
        raise TypeError(f"the model returned {type(logits[0]).__name__}, expected logits")
    return {"output": torch.cat(logits).detach().cpu()}


def _score_classifier(case: Case, outputs: Outputs) -> dict[str, float]:
    logits, labels = outputs["output"], case.private["labels"]
    if type(logits) is not torch.Tensor or logits.shape != (len(labels), 15):
        raise ValueError(f"expected logits of shape ({len(labels)}, 15), got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")
    correct = (logits.argmax(dim=1) == labels).float()
    per_class = torch.stack([correct[labels == k].mean() for k in labels.unique()])
    return {"ViT held-out accuracy": correct.mean().item(),
            "ViT worst-class accuracy": per_class.min().item()}


vit_quality = QualityCheck(
    exercise="VisionTransformer held-out accuracy",
    cases=_quality_cases,
    run=_run_classifier,
    score=_score_classifier,
    thresholds={"ViT held-out accuracy": 0.95},
    hint="check that the loss curve went down to about 0.05 and that the model trained on "
         "the 15 classes (hold_out=False); train a few more epochs or with more images.",
    forbidden=forbidden(attention=True, allowed="The ViT must use your own attention."),
)
