"""The check of ``coca_loss(image_features, text_features, logits, targets, logit_scale,
caption_weight, clip_weight)`` -> ``(contrastive, captioning)``, each already weighted, against
``open_clip.loss.CoCaLoss(caption_loss_weight=caption_weight, clip_loss_weight=clip_weight,
pad_id=-100)`` (Yu et al. 2022, *CoCa: Contrastive Captioners are Image-Text Foundation
Models*, eq. 3). ``CoCaLoss`` and ``ClipLoss`` are refused while the student's code runs;
``F.cross_entropy`` and the student's own ``caption_loss`` stay allowed.

The weights are never 0 in the cases: there open_clip returns an integer ``torch.tensor(0)``
for the contrastive part, a quirk no student should have to copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.checks.captioning._shared import randn
from course_utils.checks.captioning.caption_loss import IGNORE, validate
from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden


def _validate(image_features, text_features, logits, targets) -> None:
    if image_features.ndim != 2 or image_features.shape != text_features.shape:
        raise ValueError(f"expected image and text features of one shape (N, D), got "
                         f"{tuple(image_features.shape)} and {tuple(text_features.shape)}")
    validate(logits, targets)
    if logits.shape[0] != image_features.shape[0]:
        raise ValueError(f"expected one caption per image: {image_features.shape[0]} images, "
                         f"{logits.shape[0]} captions")


def _reference_coca_loss(image_features, text_features, logits, targets, logit_scale,
                         caption_weight, clip_weight):
    from open_clip.loss import CoCaLoss

    _validate(image_features, text_features, logits, targets)
    loss = CoCaLoss(caption_loss_weight=caption_weight, clip_loss_weight=clip_weight,
                    pad_id=IGNORE)
    return loss(image_features, text_features, logits, targets, logit_scale)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (the features coca_loss receives)."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def _coca_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator

    def case(name, n, dim, tokens, vocab, lengths, scale, caption_weight, clip_weight,
             dtype=torch.float32, python_scale=False, **kwargs):
        targets = torch.randint(0, vocab, (n, tokens), generator=g)
        ignored = torch.arange(tokens)[None, :] >= torch.tensor(lengths)[:, None]  # (N, T)
        inputs = {"image_features": _unit(randn(g, n, dim, dtype=dtype)),
                  "text_features": _unit(randn(g, n, dim, dtype=dtype)),
                  "logits": randn(g, n, tokens, vocab, dtype=dtype),
                  "targets": targets.masked_fill(ignored, IGNORE),
                  "logit_scale": scale if python_scale else torch.tensor(scale, dtype=dtype),
                  "caption_weight": caption_weight, "clip_weight": clip_weight}
        grad = ["image_features", "text_features", "logits"]
        grad += [] if python_scale else ["logit_scale"]
        return Case(name, inputs, grad=grad, **kwargs)

    cases = [
        case("4 pairs, 16-d features, captions of 6, 3, 5, 2 real targets out of T = 6, V = 11, "
             "logit_scale 1/0.07, caption_weight 2 and clip_weight 1 (CoCa's)", 4, 16, 6, 11,
             [6, 3, 5, 2], 1 / 0.07, 2.0, 1.0),
        case("float64, 3 pairs, caption_weight 0.5 and clip_weight 1.5, logit_scale a Python "
             "float 10.0", 3, 5, 4, 7, [4, 1, 2], 10.0, 0.5, 1.5, dtype=torch.float64,
             python_scale=True),
        case("one pair (batch 1): the contrastive loss is 0; caption_weight 1, clip_weight 3",
             1, 8, 5, 9, [3], 5.0, 1.0, 3.0),
        case("logits (3, 5, 7) but targets (3, 6), which it must refuse", 3, 4, 5, 7,
             [5, 5, 5], 10.0, 2.0, 1.0, raises=ValueError),
    ]
    cases[-1].inputs["targets"] = torch.zeros(3, 6, dtype=torch.long)
    if hidden:
        cases[-1:-1] = [
            case("33 pairs, 64-d features, T = 10, V = 40, logit_scale 100 (CLIP's largest)",
                 33, 64, 10, 40, [int(n) for n in torch.randint(1, 11, (33,), generator=g)],
                 100.0, 2.0, 1.0),
            case("float64, 5 pairs, logit_scale 0.5 (a high temperature), weights 3 and 0.25",
                 5, 6, 3, 5, [3, 3, 1, 2, 3], 0.5, 3.0, 0.25, dtype=torch.float64),
        ]
        cases.append(case("4 image features but 5 text features, which it must refuse", 4, 6,
                          3, 5, [3] * 4, 10.0, 2.0, 1.0, raises=ValueError))
        cases[-1].inputs["text_features"] = _unit(randn(g, 5, 6))
    return cases


def _coca(mistake: str):
    """CoCa's loss written like a student's, with one of the common mistakes."""
    def implementation(image_features, text_features, logits, targets, logit_scale,
                       caption_weight, clip_weight):
        _validate(image_features, text_features, logits, targets)
        if mistake == "swapped":
            caption_weight, clip_weight = clip_weight, caption_weight
        similarity = image_features @ text_features.T  # (N, N)
        scores = similarity / logit_scale if mistake == "inverted" else logit_scale * similarity
        labels = torch.arange(len(scores), device=scores.device)
        image_to_text = F.cross_entropy(scores, labels)
        text_to_image = F.cross_entropy(scores.T, labels)
        if mistake == "one direction":
            contrastive = image_to_text
        elif mistake == "summed":
            contrastive = image_to_text + text_to_image
        else:
            contrastive = (image_to_text + text_to_image) / 2
        log_probs = logits.log_softmax(dim=-1)  # (N, T, V)
        real = targets != IGNORE  # (N, T)
        picked = log_probs.gather(-1, targets.clamp(min=0)[..., None])[..., 0]  # (N, T)
        count = targets.numel() if mistake == "padding" else real.sum()
        captioning = -(picked * real).sum() / count
        return clip_weight * contrastive, caption_weight * captioning

    return implementation


coca_loss = Check(
    exercise="coca_loss",
    reference=_reference_coca_loss,
    cases=_coca_cases,
    mistakes=[
        Mistake("the two weights are swapped: caption_weight multiplies the captioning loss, "
                "clip_weight the contrastive one (CoCa weighs captioning 2, contrastive 1).",
                _coca("swapped")),
        Mistake("the contrastive loss goes in one direction only (image → text): CLIP's loss "
                "is symmetric, the mean of the cross-entropies over the rows and over the "
                "columns of logit_scale · I Tᵀ.", _coca("one direction")),
        Mistake("the temperature is inverted: logit_scale is already 1/τ, so multiply the "
                "similarities by it, do not divide.", _coca("inverted")),
        Mistake("the two directions of the contrastive loss are summed: CLIP averages them, "
                "(loss_i + loss_t) / 2.", _coca("summed")),
        Mistake("the captioning loss counts the -100 positions: average over the real targets "
                "only (your caption_loss does, and so does F.cross_entropy with "
                "ignore_index=-100).", _coca("padding")),
    ],
    forbidden=Forbidden(
        # the classes' methods first, so that an alias imported earlier is refused too
        attributes=["open_clip.loss.CoCaLoss.forward", "open_clip.loss.ClipLoss.forward",
                    "open_clip.loss.ClipLoss.get_logits", "open_clip.loss.CoCaLoss",
                    "open_clip.loss.ClipLoss", "open_clip.CoCaLoss", "open_clip.ClipLoss"],
        allowed="Write the symmetric contrastive loss with F.cross_entropy, and call your "
                "caption_loss for the captioning part.",
    ),
)
