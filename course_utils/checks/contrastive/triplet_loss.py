"""Check of triplet_loss(anchor, positive, negative, margin=1.0) against
``F.triplet_margin_loss`` (refused while the student's code runs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.checks.case import Case, Mistake
from course_utils.checks.contrastive._inputs import randn
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden


def _check_triplet_shapes(anchor, positive, negative):
    if anchor.ndim != 2 or positive.shape != anchor.shape or negative.shape != anchor.shape:
        raise ValueError(f"expected three (B, D) tensors of one shape, got {tuple(anchor.shape)}, "
                         f"{tuple(positive.shape)} and {tuple(negative.shape)}")


def _reference_triplet_loss(anchor, positive, negative, margin=1.0):
    _check_triplet_shapes(anchor, positive, negative)
    return F.triplet_margin_loss(anchor, positive, negative, margin=margin)


def _distances(anchor, other, squared=False):
    d = torch.linalg.vector_norm(anchor - other, dim=-1)
    return d * d if squared else d


def _triplet(anchor, positive, negative, margin=1.0, *, squared=False, hinge=True,
             reduce="mean"):
    """The triplet loss over (B, D) triplets, with switches that make each common mistake."""
    terms = _distances(anchor, positive, squared) - _distances(anchor, negative, squared) + margin
    if hinge:
        terms = terms.clamp_min(0)
    return terms.mean() if reduce == "mean" else terms.sum()


#: F.triplet_margin_loss measures ‖x − y + 1e-6‖ (eps=1e-6 keeps the gradient of two equal
#: points finite); a plain ‖x − y‖ differs by about 1e-6 relative, above float64's default
#: tolerance, so float64 cases allow that much (every mistake is off by far more).
FLOAT64_TRIPLET = (1e-5, 1e-6)


def _triplet_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator

    def triplets(batch, dim, near, far, dtype=torch.float32):
        anchor = randn(g, batch, dim, dtype=dtype)
        return {"anchor": anchor, "positive": anchor + near * randn(g, batch, dim, dtype=dtype),
                "negative": anchor + far * randn(g, batch, dim, dtype=dtype)}

    grads = ["anchor", "positive", "negative"]
    mixed = {"anchor": randn(g, 8, 5), "positive": randn(g, 8, 5), "negative": randn(g, 8, 5)}
    cases = [
        Case("8 random triplets in 5-d, margin 1 (the default): some hinges active, some not",
             mixed, grad=grads),
        Case("6 triplets with the negatives far away, margin 0.5: every hinge inactive, loss 0",
             {**triplets(6, 4, 0.2, 8.0), "margin": 0.5}, keyword=["margin"], grad=grads),
        Case("5 triplets with the negatives close and the positives far, margin 0.2: every "
             "hinge active", {**triplets(5, 3, 3.0, 0.3), "margin": 0.2}, keyword=["margin"],
             grad=grads),
        Case("one triplet (batch 1) in 7-d, margin 2", {**triplets(1, 7, 1.0, 1.0),
                                                       "margin": 2.0},
             keyword=["margin"], grad=grads),
        Case("float64, 7 triplets in 3-d, margin 0.3",
             {**triplets(7, 3, 1.0, 1.5, dtype=torch.float64), "margin": 0.3},
             keyword=["margin"], grad=grads, tolerance=FLOAT64_TRIPLET),
        Case("a positive of shape (4, 3) with an anchor of shape (4, 2), which must be refused",
             {"anchor": randn(g, 4, 2), "positive": randn(g, 4, 3), "negative": randn(g, 4, 2)},
             raises=ValueError),
    ]
    if hidden:
        cases += [
            Case("a small margin 0.05, 9 triplets in 16-d",
                 {**triplets(9, 16, 1.0, 1.0), "margin": 0.05}, keyword=["margin"], grad=grads),
            Case("33 triplets in 2-d, margin 1.5 (given by position)",
                 {**triplets(33, 2, 1.0, 1.2), "margin": 1.5}, grad=grads),
            Case("float64, 4 triplets in 1-d, margin 0.7",
                 {**triplets(4, 1, 1.0, 2.0, dtype=torch.float64), "margin": 0.7},
                 keyword=["margin"], grad=grads, tolerance=FLOAT64_TRIPLET),
            Case("(B, D) anchors with a (B,) negative, which must be refused",
                 {"anchor": randn(g, 3, 2), "positive": randn(g, 3, 2),
                  "negative": randn(g, 3)}, raises=ValueError),
        ]
    return cases


triplet_loss = Check(
    exercise="triplet_loss",
    reference=_reference_triplet_loss,
    cases=_triplet_cases,
    mistakes=[
        Mistake("those are squared distances ‖a − p‖² (FaceNet's form, shown below the test); "
                "F.triplet_margin_loss and this exercise use plain Euclidean distances ‖a − p‖.",
                lambda a, p, n, margin=1.0: _triplet(a, p, n, margin, squared=True)),
        Mistake("the hinge is missing: a triplet whose negative is already farther than the "
                "positive by the margin must cost 0, max(0, d(a,p) − d(a,n) + margin).",
                lambda a, p, n, margin=1.0: _triplet(a, p, n, margin, hinge=False)),
        Mistake("the distances are swapped: the loss is d(a, p) − d(a, n) + margin (small when "
                "the positive is near and the negative far).",
                lambda a, p, n, margin=1.0: _triplet(a, n, p, margin)),
        Mistake("average over the triplets of the batch (.mean()), do not sum.",
                lambda a, p, n, margin=1.0: _triplet(a, p, n, margin, reduce="sum")),
        Mistake("use the `margin` argument, not a fixed margin of 1.",
                lambda a, p, n, margin=1.0: _triplet(a, p, n, 1.0)),
        Mistake("the margin is subtracted: the loss is d(a, p) − d(a, n) + margin.",
                lambda a, p, n, margin=1.0: _triplet(a, p, n, -margin)),
    ],
    forbidden=Forbidden(
        functions=["torch.nn.functional.triplet_margin_loss", "torch.triplet_margin_loss",
                   "torch.nn.functional.triplet_margin_with_distance_loss"],
        allowed="Compute the two distances with torch.linalg.vector_norm and the hinge with "
                "clamp_min(0) (or torch.relu).",
    ),
)
