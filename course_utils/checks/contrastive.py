"""Checks of notebook 03_similarity_contrastive: similarity and contrastive losses.

References: ``F.cosine_similarity`` (cosine_similarity, similarity_matrix),
``F.triplet_margin_loss`` (triplet_loss), a brute-force loop over anchors written here
(batch_hard_triplet_loss, Hermans et al. 2017) and ``open_clip.loss.ClipLoss`` (clip_loss).
Each is refused while the student's code runs; ``F.cross_entropy`` stays allowed for
``clip_loss``, since that is how the field writes it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden


def _randn(generator: torch.Generator, *shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=dtype)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (the inputs of clip_loss)."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


# --- cosine_similarity(a, b, dim=-1, eps=1e-8) ------------------------------------------------


def _broadcast_or_value_error(a: torch.Tensor, b: torch.Tensor) -> None:
    try:
        torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(f"shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast") \
            from None


def _reference_cosine_similarity(a, b, dim=-1, eps=1e-8):
    _broadcast_or_value_error(a, b)
    return F.cosine_similarity(a, b, dim=dim, eps=eps)


def _dot(a, b, dim=-1):
    return (a * b).sum(dim=dim)


def _norm(x, dim=-1):
    return torch.linalg.vector_norm(x, dim=dim)


def _cosine_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator
    zero_a = _randn(g, 4, 6)
    zero_a[1] = 0.0
    zero_b = _randn(g, 4, 6)
    zero_b[3] = 0.0
    zero_b[1] = 0.0  # row 1: both vectors are zero
    cases = [
        Case("a batch of 5 pairs of 7-d vectors (5, 7)", {"a": _randn(g, 5, 7),
                                                           "b": 3 * _randn(g, 5, 7)},
             grad=["a", "b"]),
        Case("two single vectors (6,) and (6,)", {"a": _randn(g, 6), "b": _randn(g, 6)},
             grad=["a", "b"]),
        Case("broadcasting: one query (1, 5) against 4 keys (4, 5)",
             {"a": _randn(g, 1, 5), "b": 0.5 * _randn(g, 4, 5)}, grad=["a", "b"]),
        Case("broadcasting (3, 1, 6) against (1, 4, 6): all 3 × 4 pairs",
             {"a": _randn(g, 3, 1, 6), "b": _randn(g, 1, 4, 6)}, grad=["a", "b"]),
        Case("dim=0: vectors in the columns of (6, 3) matrices",
             {"a": _randn(g, 6, 3), "b": _randn(g, 6, 3), "dim": 0}, keyword=["dim"],
             grad=["a", "b"]),
        Case("float64 (2, 3, 5), dim=1",
             {"a": _randn(g, 2, 3, 5, dtype=torch.float64),
              "b": _randn(g, 2, 3, 5, dtype=torch.float64), "dim": 1},
             keyword=["dim"], grad=["a", "b"]),
        Case("zero vectors: a[1], b[1] and b[3] are all zeros (their similarity is 0, and "
             "their gradients are finite, not NaN)",
             {"a": zero_a, "b": zero_b}, grad=["a", "b"]),
        Case("eps=0.5 with short vectors: each norm is clamped, max(‖a‖, eps)·max(‖b‖, eps)",
             {"a": 0.2 * _randn(g, 4, 3), "b": _randn(g, 4, 3), "eps": 0.5}, keyword=["eps"]),
        Case("shapes (3, 4) and (5, 4), which do not broadcast and must be refused",
             {"a": _randn(g, 3, 4), "b": _randn(g, 5, 4)}, raises=ValueError),
    ]
    if hidden:
        cases += [
            Case("batch 1 of 1-d vectors (1, 1) (cosine ±1)",
                 {"a": _randn(g, 1, 1), "b": _randn(g, 1, 1)}, grad=["a", "b"]),
            Case("dim=-2 in float64 (2, 9, 4) against (9, 1)",
                 {"a": _randn(g, 2, 9, 4, dtype=torch.float64),
                  "b": _randn(g, 9, 1, dtype=torch.float64), "dim": -2},
                 keyword=["dim"], grad=["a", "b"]),
            Case("large vectors (3, 257) of very different lengths",
                 {"a": 1e3 * _randn(g, 3, 257), "b": 1e-3 * _randn(g, 3, 257)},
                 grad=["a", "b"]),
            Case("a zero vector against a whole batch, float64",
                 {"a": torch.zeros(1, 5, dtype=torch.float64),
                  "b": _randn(g, 6, 5, dtype=torch.float64)}),
            Case("shapes (2, 3) and (3, 2), which must be refused",
                 {"a": _randn(g, 2, 3), "b": _randn(g, 3, 2)}, raises=ValueError),
        ]
    return cases


cosine_similarity = Check(
    exercise="cosine_similarity",
    reference=_reference_cosine_similarity,
    cases=_cosine_cases,
    mistakes=[
        Mistake("a zero vector has norm 0 and 0/0 is NaN: clamp each norm to at least eps "
                "(clamp_min(eps)) before dividing, so that a zero vector gets similarity 0.",
                lambda a, b, dim=-1, eps=1e-8: _dot(a, b, dim) / (_norm(a, dim) * _norm(b, dim))),
        Mistake("that is the plain dot product a·b: divide by both lengths, ‖a‖ and ‖b‖.",
                lambda a, b, dim=-1, eps=1e-8: _dot(a, b, dim)),
        Mistake("only a is normalised: divide by the length of b too.",
                lambda a, b, dim=-1, eps=1e-8: _dot(a, b, dim) / _norm(a, dim).clamp_min(eps)),
        Mistake("only b is normalised: divide by the length of a too.",
                lambda a, b, dim=-1, eps=1e-8: _dot(a, b, dim) / _norm(b, dim).clamp_min(eps)),
        Mistake("the length ‖a‖ is the square root of the sum of squares; you divided by the "
                "squared lengths.",
                lambda a, b, dim=-1, eps=1e-8: _dot(a, b, dim) / (
                    (a * a).sum(dim).clamp_min(eps) * (b * b).sum(dim).clamp_min(eps))),
        Mistake("clamp each norm on its own, max(‖a‖, eps) · max(‖b‖, eps), as PyTorch does, "
                "not their product.",
                lambda a, b, dim=-1, eps=1e-8: _dot(a, b, dim) / (
                    _norm(a, dim) * _norm(b, dim)).clamp_min(eps)),
        Mistake("the values are right but the gradient at a zero vector is NaN: sqrt(Σa²) has "
                "an infinite slope at 0 (and ∞ · 0 = NaN), which clamp_min after the sqrt "
                "does not stop. Use torch.linalg.vector_norm, whose gradient at 0 is 0, or "
                "clamp the sum of squares before the sqrt.",
                lambda a, b, dim=-1, eps=1e-8: _dot(a, b, dim) / (
                    (a * a).sum(dim).sqrt().clamp_min(eps) * (b * b).sum(dim).sqrt()
                    .clamp_min(eps))),
        Mistake("reduce over the axis given by `dim`, not always the last one.",
                lambda a, b, dim=-1, eps=1e-8: _dot(a, b) / (
                    _norm(a).clamp_min(eps) * _norm(b).clamp_min(eps))),
    ],
    forbidden=Forbidden(
        functions=["torch.nn.functional.cosine_similarity", "torch.cosine_similarity",
                   "torch.nn.functional.normalize"],
        allowed="Compute the dot product and the two lengths yourself (a * b, .sum(dim), "
                "torch.linalg.vector_norm) and clamp the lengths with clamp_min(eps).",
    ),
)


# --- similarity_matrix(a, b): (N, D), (M, D) -> (N, M) ----------------------------------------


def _reference_similarity_matrix(a, b):
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (N, D) and (M, D), got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1)  # (N, M)


def _rows(x, dim=-1):
    return x / torch.linalg.vector_norm(x, dim=dim, keepdim=True).clamp_min(1e-8)


def _similarity_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator
    with_zero = _randn(g, 5, 4)
    with_zero[2] = 0.0
    cases = [
        Case("a (4, 8) against b (6, 8)", {"a": _randn(g, 4, 8), "b": 2 * _randn(g, 6, 8)},
             grad=["a", "b"]),
        Case("a (7, 3) against itself-sized b (7, 3)", {"a": _randn(g, 7, 3),
                                                         "b": _randn(g, 7, 3)},
             grad=["a", "b"]),
        Case("one row a (1, 5) against b (3, 5)", {"a": _randn(g, 1, 5), "b": _randn(g, 3, 5)},
             grad=["a", "b"]),
        Case("float64, a (3, 6) against b (2, 6)",
             {"a": _randn(g, 3, 6, dtype=torch.float64), "b": _randn(g, 2, 6, dtype=torch.float64)},
             grad=["a", "b"]),
        Case("a zero row in b (5, 4): its column is 0, not NaN",
             {"a": _randn(g, 3, 4), "b": with_zero}),
        Case("a (3, 4) and b (3, 5), whose widths differ and must be refused",
             {"a": _randn(g, 3, 4), "b": _randn(g, 3, 5)}, raises=ValueError),
        Case("a (2, 3, 4), not a matrix, which must be refused",
             {"a": _randn(g, 2, 3, 4), "b": _randn(g, 3, 4)}, raises=ValueError),
    ]
    if hidden:
        cases += [
            Case("a (33, 17) against b (1, 17)", {"a": _randn(g, 33, 17), "b": _randn(g, 1, 17)},
                 grad=["a", "b"]),
            Case("1-d embeddings, a (4, 1) against b (5, 1)",
                 {"a": _randn(g, 4, 1, dtype=torch.float64),
                  "b": _randn(g, 5, 1, dtype=torch.float64)}, grad=["a", "b"]),
            Case("a vector (4,), not a matrix, which must be refused",
                 {"a": _randn(g, 4), "b": _randn(g, 3, 4)}, raises=ValueError),
        ]
    return cases


similarity_matrix = Check(
    exercise="similarity_matrix",
    reference=_reference_similarity_matrix,
    cases=_similarity_cases,
    mistakes=[
        Mistake("those are raw dot products a @ b.T: normalise the rows of a and b first.",
                lambda a, b: a @ b.T),
        Mistake("only the rows of a are normalised: normalise the rows of b too.",
                lambda a, b: _rows(a) @ b.T),
        Mistake("only the rows of b are normalised: normalise the rows of a too.",
                lambda a, b: a @ _rows(b).T),
        Mistake("normalise each row (each embedding, dim=1), not each column.",
                lambda a, b: _rows(a, 0) @ _rows(b, 0).T),
        Mistake("entry [i, j] compares a[i] with b[j]: the result is (N, M), a @ b.T, "
                "not b @ a.T.",
                lambda a, b: _rows(b) @ _rows(a).T),
        Mistake("a zero row has norm 0 and 0/0 is NaN: clamp the norms (clamp_min) before "
                "dividing.",
                lambda a, b: (a / torch.linalg.vector_norm(a, dim=1, keepdim=True))
                @ (b / torch.linalg.vector_norm(b, dim=1, keepdim=True)).T),
    ],
    forbidden=Forbidden(
        functions=["torch.nn.functional.cosine_similarity", "torch.cosine_similarity"],
        allowed="Normalise the rows, then one matrix product gives every pair at once.",
    ),
)


# --- triplet_loss(anchor, positive, negative, margin=1.0) -------------------------------------


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
        anchor = _randn(g, batch, dim, dtype=dtype)
        return {"anchor": anchor, "positive": anchor + near * _randn(g, batch, dim, dtype=dtype),
                "negative": anchor + far * _randn(g, batch, dim, dtype=dtype)}

    grads = ["anchor", "positive", "negative"]
    mixed = {"anchor": _randn(g, 8, 5), "positive": _randn(g, 8, 5), "negative": _randn(g, 8, 5)}
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
             {"anchor": _randn(g, 4, 2), "positive": _randn(g, 4, 3), "negative": _randn(g, 4, 2)},
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
                 {"anchor": _randn(g, 3, 2), "positive": _randn(g, 3, 2),
                  "negative": _randn(g, 3)}, raises=ValueError),
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


# --- batch_hard_triplet_loss(embeddings, labels, margin=0.2) ----------------------------------


def _check_batch(embeddings, labels):
    if embeddings.ndim != 2 or labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"expected embeddings (B, D) and labels (B,), got "
                         f"{tuple(embeddings.shape)} and {tuple(labels.shape)}")


def _reference_batch_hard(embeddings, labels, margin=0.2):
    """Hermans et al. 2017, batch hard, written as the plain loop over anchors."""
    _check_batch(embeddings, labels)
    names = labels.tolist()
    losses = []
    for a, label in enumerate(names):
        positives = [torch.linalg.vector_norm(embeddings[a] - embeddings[p])
                     for p, other in enumerate(names) if p != a and other == label]
        negatives = [torch.linalg.vector_norm(embeddings[a] - embeddings[n])
                     for n, other in enumerate(names) if other != label]
        if not positives or not negatives:
            continue  # an anchor needs both a positive and a negative
        hardest_positive = torch.stack(positives).max()
        hardest_negative = torch.stack(negatives).min()
        losses.append((hardest_positive - hardest_negative + margin).clamp_min(0))
    if not losses:
        return embeddings.new_zeros(())
    return torch.stack(losses).mean()


def _batch_hard(embeddings, labels, margin=0.2, *, squared=False, hinge=True, skip=True,
                divide_by_all=False, hardest=True, empty_nan=False, self_positive=False):
    """The vectorised batch-hard loss, with switches that make each common mistake."""
    d = torch.linalg.vector_norm(embeddings[:, None] - embeddings[None], dim=-1)  # (B, B)
    if squared:
        d = d * d
    same = labels[:, None] == labels[None, :]  # (B, B)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same if self_positive else same & ~eye
    negative = ~same
    inf = torch.tensor(math.inf, dtype=d.dtype, device=d.device)
    if hardest:
        d_pos = torch.where(positive, d, -inf).amax(dim=1)
        d_neg = torch.where(negative, d, inf).amin(dim=1)
    else:  # easiest positive and easiest negative
        d_pos = torch.where(positive, d, inf).amin(dim=1)
        d_neg = torch.where(negative, d, -inf).amax(dim=1)
    valid = positive.any(dim=1) & negative.any(dim=1)
    if not skip:
        valid = torch.ones_like(valid)
        d_pos = torch.where(positive.any(dim=1), d_pos, torch.zeros_like(d_pos))
        d_neg = torch.where(negative.any(dim=1), d_neg, torch.zeros_like(d_neg))
    terms = d_pos - d_neg + margin
    if hinge:
        terms = terms.clamp_min(0)
    terms = terms[valid]
    if divide_by_all:
        return terms.sum() / len(labels)
    if len(terms) == 0 and not empty_nan:
        return embeddings.new_zeros(())
    return terms.mean()


def _clusters(generator, labels, spread, dtype=torch.float32, dim=3):
    """Embeddings around one random centre per label, ``spread`` the noise scale."""
    centres = 2 * _randn(generator, int(labels.max()) + 1, dim, dtype=dtype)
    return centres[labels] + spread * _randn(generator, len(labels), dim, dtype=dtype)


def _batch_hard_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator

    def shuffled(labels):
        return labels[torch.randperm(len(labels), generator=g)]

    three_by_four = shuffled(torch.arange(3).repeat(4))  # 12 labels, 3 classes
    with_single = shuffled(torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3]))  # label 2 appears once
    clustered = shuffled(torch.arange(4).repeat(5))  # 20 labels, 4 classes
    single = _randn(g, 9, 5)
    alone = int((with_single == 2).nonzero()[0])
    single[alone] = single[(alone + 1) % 9] + 0.02 * _randn(g, 5)  # a negative within the margin
    cases = [
        Case("12 random 4-d embeddings, 3 classes of 4, margin 0.2 (the default)",
             {"embeddings": _randn(g, 12, 4), "labels": three_by_four}, grad=["embeddings"]),
        Case("9 embeddings where label 2 appears once: that anchor has no positive, skip it",
             {"embeddings": single, "labels": with_single}, grad=["embeddings"]),
        Case("20 embeddings in 4 tight clusters, margin 0.5: most hinges inactive",
             {"embeddings": _clusters(g, clustered, 0.3), "labels": clustered, "margin": 0.5},
             keyword=["margin"], grad=["embeddings"]),
        Case("float64, 10 embeddings in 2-d, 2 classes, margin 1",
             {"embeddings": _randn(g, 10, 2, dtype=torch.float64),
              "labels": shuffled(torch.arange(2).repeat(5)), "margin": 1.0},
             keyword=["margin"], grad=["embeddings"]),
        Case("6 embeddings that all share one label: no anchor has a negative, the loss is 0",
             {"embeddings": _randn(g, 6, 3), "labels": torch.full((6,), 4)},
             grad=["embeddings"]),
        Case("5 embeddings with 5 different labels: no anchor has a positive, the loss is 0",
             {"embeddings": _randn(g, 5, 3), "labels": torch.tensor([4, 0, 3, 1, 2])},
             grad=["embeddings"]),
        Case("embeddings (6, 3) with 5 labels, which must be refused",
             {"embeddings": _randn(g, 6, 3), "labels": torch.arange(5)}, raises=ValueError),
    ]
    if hidden:
        eight = shuffled(torch.tensor([0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 5, 7, 7, 7, 7, 7]))
        cases += [
            Case("16 embeddings in 3-d, labels 0..7 of uneven counts (two appear once), "
                 "margin 0.3", {"embeddings": _clusters(g, eight, 1.0), "labels": eight,
                                "margin": 0.3},
                 keyword=["margin"], grad=["embeddings"]),
            Case("float64, 24 embeddings in 8-d, 6 classes, margin 0 (given by position)",
                 {"embeddings": _randn(g, 24, 8, dtype=torch.float64),
                  "labels": shuffled(torch.arange(6).repeat(4)), "margin": 0.0},
                 grad=["embeddings"]),
            Case("one embedding (batch 1): no positive, no negative, the loss is 0",
                 {"embeddings": _randn(g, 1, 4), "labels": torch.tensor([2])},
                 grad=["embeddings"]),
            Case("two embeddings, one label each, float64: the loss is 0",
                 {"embeddings": _randn(g, 2, 4, dtype=torch.float64),
                  "labels": torch.tensor([0, 1])}, grad=["embeddings"]),
            Case("embeddings (4,) without a batch axis, which must be refused",
                 {"embeddings": _randn(g, 4), "labels": torch.arange(4)}, raises=ValueError),
        ]
    return cases


_SKIP_HINT = ("an anchor is not its own positive (leave the diagonal out), so an anchor whose "
              "label appears only once has no positive, and one with no other label in the batch "
              "has no negative: skip those anchors.")

batch_hard_triplet_loss = Check(
    exercise="batch_hard_triplet_loss",
    reference=_reference_batch_hard,
    cases=_batch_hard_cases,
    mistakes=[
        Mistake("those are squared distances; batch hard (Hermans et al. 2017) uses plain "
                "Euclidean distances ‖x_a − x_p‖.",
                lambda e, y, margin=0.2: _batch_hard(e, y, margin, squared=True)),
        Mistake("the hinge is missing: an anchor whose hardest negative is farther than its "
                "hardest positive by the margin must cost 0.",
                lambda e, y, margin=0.2: _batch_hard(e, y, margin, hinge=False)),
        Mistake(_SKIP_HINT, lambda e, y, margin=0.2: _batch_hard(e, y, margin, skip=False)),
        # the same outputs as the line above wherever a label appears once: the same hint
        Mistake(_SKIP_HINT,
                lambda e, y, margin=0.2: _batch_hard(e, y, margin, self_positive=True)),
        Mistake("average over the anchors that have both a positive and a negative, not over "
                "the whole batch.",
                lambda e, y, margin=0.2: _batch_hard(e, y, margin, divide_by_all=True)),
        Mistake("the hardest positive is the farthest one (max) and the hardest negative the "
                "nearest one (min); you took the easiest.",
                lambda e, y, margin=0.2: _batch_hard(e, y, margin, hardest=False)),
        Mistake("the mean of an empty tensor is NaN: when no anchor has both a positive and a "
                "negative, return a zero (e.g. embeddings.new_zeros(())).",
                lambda e, y, margin=0.2: _batch_hard(e, y, margin, empty_nan=True)),
        Mistake("use the `margin` argument, not a fixed margin of 0.2.",
                lambda e, y, margin=0.2: _batch_hard(e, y, 0.2)),
    ],
)


# --- clip_loss(image_features, text_features, logit_scale) ------------------------------------


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
        return {"image_features": _unit(_randn(g, n, d, dtype=dtype)),
                "text_features": _unit(_randn(g, n, d, dtype=dtype))}

    def scale(value, dtype=torch.float32):
        return torch.tensor(value, dtype=dtype)

    grads = ["image_features", "text_features", "logit_scale"]
    cases = [
        # first, so that renormalising the features is recognised before any other problem
        Case("4 pairs of 6-d features that are NOT unit length (use them as given), "
             "logit_scale 2.5",
             {"image_features": 0.5 * _randn(g, 4, 6), "text_features": 2 * _randn(g, 4, 6),
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
             {"image_features": _unit(_randn(g, 4, 6)), "text_features": _unit(_randn(g, 5, 6)),
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
                 {"image_features": _unit(_randn(g, 4, 6)),
                  "text_features": _unit(_randn(g, 4, 7)), "logit_scale": scale(10.0)},
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
