"""Graded thresholds on the trained MiniCLIP: zero-shot accuracy and Recall@5, measured on
held-out Shapes-world images and captions the checks generate themselves."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from course_utils.checks.case import Case, Outputs
from course_utils.checks.clip._inputs import seed_from
from course_utils.checks.clip.recall_at_k import recall_figures
from course_utils.checks.clip.tokenize import reference_tokenize
from course_utils.checks.core import QualityCheck
from course_utils.data import (
    CLASSES,
    PROMPT_TEMPLATES,
    ShapesCaptions,
    ShapesClassification,
    build_vocabulary,
    class_prompts,
)

# --- graded thresholds on the trained model ---------------------------------------------------

ZERO_SHOT = "zero-shot accuracy, 15 classes (graded)"
COMPOSITIONAL = "zero-shot accuracy on the 3 held-out pairs (compositional, not graded)"
GALLERY = 100  # retrieval among 100 candidates, as in the notebook


def _context(texts: Sequence[str]) -> int:
    """The shortest context that holds every text: longest + <start> + <end>."""
    return max(len(t.split()) for t in texts) + 2


def _device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _encode(model, case: Case) -> Outputs:
    """The trained model's unit embeddings of the case's images and texts (batches of 500)."""
    device = _device(model)
    images, tokens = case.inputs["images"], case.inputs["tokens"]
    image_features = torch.cat([model.encode_image(images[i:i + 500].to(device)).float().cpu()
                                for i in range(0, len(images), 500)])
    text_features = torch.cat([model.encode_text(tokens[i:i + 500].to(device)).float().cpu()
                               for i in range(0, len(tokens), 500)])
    return {"image_features": image_features, "text_features": text_features}


def _unit(outputs: Outputs, key: str, rows: int) -> torch.Tensor:
    value = outputs[key]
    if type(value) is not torch.Tensor or value.ndim != 2 or len(value) != rows:
        raise ValueError(f"{key} should be a ({rows}, E) tensor, got "
                         f"{getattr(value, 'shape', type(value).__name__)}")
    return F.normalize(value.double(), dim=-1)


def _zero_shot_quality_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    seed = seed_from(generator)
    prompts = [p for c in CLASSES for p in class_prompts(c)]  # class-major, (15·8,)
    tokens = reference_tokenize(prompts, build_vocabulary(), _context(prompts))
    size = 1200 if hidden else 600
    seen = ShapesClassification("test", size=size, seed=seed, hold_out=True)
    held = ShapesClassification("compositional", size=size // 2, seed=seed, hold_out=True)
    return [
        Case(f"{size} held-out one-object images of the 12 pairs seen in training, "
             "classified among all 15 classes", {"images": seen.images, "tokens": tokens},
             private={"labels": seen.labels, "figure": ZERO_SHOT}),
        Case(f"{size // 2} images of the 3 pairs held out of training, among all 15 classes",
             {"images": held.images, "tokens": tokens},
             private={"labels": held.labels, "figure": COMPOSITIONAL}),
    ]


def _zero_shot_score(case: Case, outputs: Outputs) -> dict[str, float]:
    labels = case.private["labels"]
    images = _unit(outputs, "image_features", len(labels))
    texts = _unit(outputs, "text_features", len(CLASSES) * len(PROMPT_TEMPLATES))
    classifier = F.normalize(texts.reshape(len(CLASSES), len(PROMPT_TEMPLATES), -1).mean(1),
                             dim=-1)  # (15, E): prompt ensemble (Radford et al. 2021, §3.1.4)
    predictions = (images @ classifier.T).argmax(dim=1)  # (N,)
    return {case.private["figure"]: (predictions == labels).double().mean().item()}


zero_shot_quality = QualityCheck(
    exercise="MiniCLIP zero-shot accuracy",
    cases=_zero_shot_quality_cases,
    run=_encode,
    score=_zero_shot_score,
    thresholds={ZERO_SHOT: 0.95},
    hint="train longer or check the training recipe (single-object captions in the data, "
         "batch 64, learning rate 2e-3); every exercise's test must pass first.",
)


def _retrieval_quality_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    size = 1000 if hidden else 500
    pairs = ShapesCaptions("test", size=size, seed=seed_from(generator), hold_out=True)
    tokens = reference_tokenize(pairs.captions, build_vocabulary(), _context(pairs.captions))
    return [Case(f"{size} held-out image–caption pairs, in galleries of {GALLERY}",
                 {"images": pairs.images, "tokens": tokens},
                 private={"size": size, "tokens": tokens.clone()})]


def _recall_name(k: int, direction: int) -> str:
    """The name of a Recall@k figure: direction 0 is image→text, 1 is text→image."""
    return f"{'image→text' if direction == 0 else 'text→image'} Recall@{k} (graded)"


def _retrieval_score(case: Case, outputs: Outputs) -> dict[str, float]:
    size = case.private["size"]
    images = _unit(outputs, "image_features", size)
    texts = _unit(outputs, "text_features", size)
    totals = {(k, d): 0.0 for k in (1, 5) for d in (0, 1)}
    galleries = range(0, size, GALLERY)
    for start in galleries:
        tokens = case.private["tokens"][start:start + GALLERY]  # (G, L)
        same = (tokens[:, None, :] == tokens[None, :, :]).all(dim=-1)  # (G, G) same caption
        figures = recall_figures(images[start:start + GALLERY], texts[start:start + GALLERY],
                                 same=same)
        for (k, direction) in totals:
            totals[k, direction] += figures[k][direction] / len(galleries)
    return {_recall_name(k, d): value for (k, d), value in sorted(totals.items())}


retrieval_quality = QualityCheck(
    exercise="MiniCLIP retrieval",
    cases=_retrieval_quality_cases,
    run=_encode,
    score=_retrieval_score,
    thresholds={_recall_name(5, direction): 0.90 for direction in (0, 1)},
    hint="train longer or check the training recipe; every exercise's test must pass first.",
)
