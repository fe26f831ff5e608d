"""Check of batch_hard_triplet_loss(embeddings, labels, margin=0.2) (Hermans et al. 2017)
against a brute-force loop over the anchors, written here."""

from __future__ import annotations

import math

import torch

from course_utils.checks.case import Case, Mistake
from course_utils.checks.contrastive._inputs import randn
from course_utils.checks.core import Check


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
    centres = 2 * randn(generator, int(labels.max()) + 1, dim, dtype=dtype)
    return centres[labels] + spread * randn(generator, len(labels), dim, dtype=dtype)


def _batch_hard_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator

    def shuffled(labels):
        return labels[torch.randperm(len(labels), generator=g)]

    three_by_four = shuffled(torch.arange(3).repeat(4))  # 12 labels, 3 classes
    with_single = shuffled(torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3]))  # label 2 appears once
    clustered = shuffled(torch.arange(4).repeat(5))  # 20 labels, 4 classes
    single = randn(g, 9, 5)
    alone = int((with_single == 2).nonzero()[0])
    single[alone] = single[(alone + 1) % 9] + 0.02 * randn(g, 5)  # a negative within the margin
    cases = [
        Case("12 random 4-d embeddings, 3 classes of 4, margin 0.2 (the default)",
             {"embeddings": randn(g, 12, 4), "labels": three_by_four}, grad=["embeddings"]),
        Case("9 embeddings where label 2 appears once: that anchor has no positive, skip it",
             {"embeddings": single, "labels": with_single}, grad=["embeddings"]),
        Case("20 embeddings in 4 tight clusters, margin 0.5: most hinges inactive",
             {"embeddings": _clusters(g, clustered, 0.3), "labels": clustered, "margin": 0.5},
             keyword=["margin"], grad=["embeddings"]),
        Case("float64, 10 embeddings in 2-d, 2 classes, margin 1",
             {"embeddings": randn(g, 10, 2, dtype=torch.float64),
              "labels": shuffled(torch.arange(2).repeat(5)), "margin": 1.0},
             keyword=["margin"], grad=["embeddings"]),
        Case("6 embeddings that all share one label: no anchor has a negative, the loss is 0",
             {"embeddings": randn(g, 6, 3), "labels": torch.full((6,), 4)},
             grad=["embeddings"]),
        Case("5 embeddings with 5 different labels: no anchor has a positive, the loss is 0",
             {"embeddings": randn(g, 5, 3), "labels": torch.tensor([4, 0, 3, 1, 2])},
             grad=["embeddings"]),
        Case("embeddings (6, 3) with 5 labels, which must be refused",
             {"embeddings": randn(g, 6, 3), "labels": torch.arange(5)}, raises=ValueError),
    ]
    if hidden:
        eight = shuffled(torch.tensor([0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 5, 7, 7, 7, 7, 7]))
        cases += [
            Case("16 embeddings in 3-d, labels 0..7 of uneven counts (two appear once), "
                 "margin 0.3", {"embeddings": _clusters(g, eight, 1.0), "labels": eight,
                                "margin": 0.3},
                 keyword=["margin"], grad=["embeddings"]),
            Case("float64, 24 embeddings in 8-d, 6 classes, margin 0 (given by position)",
                 {"embeddings": randn(g, 24, 8, dtype=torch.float64),
                  "labels": shuffled(torch.arange(6).repeat(4)), "margin": 0.0},
                 grad=["embeddings"]),
            Case("one embedding (batch 1): no positive, no negative, the loss is 0",
                 {"embeddings": randn(g, 1, 4), "labels": torch.tensor([2])},
                 grad=["embeddings"]),
            Case("two embeddings, one label each, float64: the loss is 0",
                 {"embeddings": randn(g, 2, 4, dtype=torch.float64),
                  "labels": torch.tensor([0, 1])}, grad=["embeddings"]),
            Case("embeddings (4,) without a batch axis, which must be refused",
                 {"embeddings": randn(g, 4), "labels": torch.arange(4)}, raises=ValueError),
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
