"""Check of clip_loss(image_features, text_features, logit_scale) against ``open_clip``'s
``ClipLoss`` (refused while the student's code runs; ``F.cross_entropy`` stays allowed)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.checks.case import Case, Mistake
from course_utils.checks.contrastive._inputs import randn
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (the inputs of clip_loss)."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def _check_features(image_features, text_features):
    if image_features.ndim != 2 or image_features.shape != text_features.shape:
        raise ValueError(f"expected image and text features of one shape (N, D), got "
                         f"{tuple(image_features.shape)} and {tuple(text_features.shape)}")


def _reference_clip_loss(image_features, text_features, logit_scale):
    from open_clip.loss import ClipLoss

    _check_features(image_features, text_features)
    return ClipLoss()(image_features, text_features, logit_scale)


def _clip(i, t, scale, *, directions="both", combine="mean", temperature="multiply",
          reduction="mean", renormalise=False):
    """CLIP's loss with switches that make each common mistake."""
    if renormalise:
        i, t = F.normalize(i, dim=-1), F.normalize(t, dim=-1)
    logits = i @ t.T  # (N, N)
    if temperature == "multiply":
        logits = scale * logits
    elif temperature == "divide":
        logits = logits / scale
    labels = torch.arange(len(i), device=i.device)
    image_to_text = F.cross_entropy(logits, labels, reduction=reduction)
    text_to_image = F.cross_entropy(logits.T, labels, reduction=reduction)
    if directions == "image":
        return image_to_text
    if directions == "text":
        return text_to_image
    total = image_to_text + text_to_image
    return total / 2 if combine == "mean" else total


def _clip_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator

    def features(n, d, dtype=torch.float32):
        return {"image_features": _unit(randn(g, n, d, dtype=dtype)),
                "text_features": _unit(randn(g, n, d, dtype=dtype))}

    def scale(value, dtype=torch.float32):
        return torch.tensor(value, dtype=dtype)

    grads = ["image_features", "text_features", "logit_scale"]
    cases = [
        # first, so that renormalising the features is recognised before any other problem
        Case("4 pairs of 6-d features that are NOT unit length (use them as given), "
             "logit_scale 2.5",
             {"image_features": 0.5 * randn(g, 4, 6), "text_features": 2 * randn(g, 4, 6),
              "logit_scale": scale(2.5)}, grad=grads),
        Case("8 pairs of unit 16-d features, logit_scale 1/0.07 (CLIP's initial temperature)",
             {**features(8, 16), "logit_scale": scale(1 / 0.07)}, grad=grads),
        Case("5 pairs of unit 3-d features, logit_scale 100 (CLIP's largest)",
             {**features(5, 3), "logit_scale": scale(100.0)}, grad=grads),
        Case("float64, 6 pairs of unit 5-d features, logit_scale a Python float 4.0",
             {**features(6, 5, torch.float64), "logit_scale": 4.0},
             grad=["image_features", "text_features"]),
        Case("one pair (batch 1): the loss is 0", {**features(1, 4), "logit_scale": scale(10.0)},
             grad=grads),
        Case("4 images but 5 texts, which must be refused",
             {"image_features": _unit(randn(g, 4, 6)), "text_features": _unit(randn(g, 5, 6)),
              "logit_scale": scale(10.0)}, raises=ValueError),
    ]
    if hidden:
        cases += [
            Case("33 pairs of unit 64-d features, logit_scale 30",
                 {**features(33, 64), "logit_scale": scale(30.0)}, grad=grads),
            Case("float64, 3 pairs of unit 2-d features, logit_scale 0.5 (a high temperature)",
                 {**features(3, 2, torch.float64), "logit_scale": scale(0.5, torch.float64)},
                 grad=grads),
            Case("image features (4, 6) with text features (4, 7), which must be refused",
                 {"image_features": _unit(randn(g, 4, 6)),
                  "text_features": _unit(randn(g, 4, 7)), "logit_scale": scale(10.0)},
                 raises=ValueError),
        ]
    return cases


clip_loss = Check(
    exercise="clip_loss",
    reference=_reference_clip_loss,
    cases=_clip_cases,
    mistakes=[
        Mistake("the features come L2-normalised from the encoders and the loss uses them as "
                "given: do not normalise them again.",
                lambda i, t, s: _clip(i, t, s, renormalise=True)),
        Mistake("only the image → text direction (cross-entropy over the rows of the logits): "
                "CLIP's loss is symmetric, the mean of image → text and text → image.",
                lambda i, t, s: _clip(i, t, s, directions="image")),
        Mistake("only the text → image direction (cross-entropy over logits.T): CLIP's loss is "
                "symmetric, the mean of image → text and text → image.",
                lambda i, t, s: _clip(i, t, s, directions="text")),
        Mistake("the two directions are summed: CLIP averages them, (loss_i + loss_t) / 2.",
                lambda i, t, s: _clip(i, t, s, combine="sum")),
        Mistake("the temperature is missing: the logits are logit_scale · I Tᵀ "
                "(logit_scale = 1/τ).",
                lambda i, t, s: _clip(i, t, s, temperature="none")),
        Mistake("the temperature is inverted: logit_scale is already 1/τ, so multiply the "
                "similarities by it, do not divide.",
                lambda i, t, s: _clip(i, t, s, temperature="divide")),
        Mistake("cross-entropy averages over the N pairs of the batch; you summed.",
                lambda i, t, s: _clip(i, t, s, reduction="sum")),
    ],
    forbidden=Forbidden(
        # the class's methods first, so that an alias imported earlier is refused too
        attributes=["open_clip.loss.ClipLoss.forward", "open_clip.loss.ClipLoss.get_logits",
                    "open_clip.loss.ClipLoss", "open_clip.ClipLoss"],
        allowed="Build the logits with a matrix product and use F.cross_entropy twice.",
    ),
)
