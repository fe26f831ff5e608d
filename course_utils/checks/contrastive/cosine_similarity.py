"""Check of cosine_similarity(a, b, dim=-1, eps=1e-8) against ``F.cosine_similarity`` (which,
with ``torch.cosine_similarity`` and ``F.normalize``, is refused while the student's code runs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.checks.case import Case, Mistake
from course_utils.checks.contrastive._inputs import randn
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden


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
    zero_a = randn(g, 4, 6)
    zero_a[1] = 0.0
    zero_b = randn(g, 4, 6)
    zero_b[3] = 0.0
    zero_b[1] = 0.0  # row 1: both vectors are zero
    cases = [
        Case("a batch of 5 pairs of 7-d vectors (5, 7)", {"a": randn(g, 5, 7),
                                                           "b": 3 * randn(g, 5, 7)},
             grad=["a", "b"]),
        Case("two single vectors (6,) and (6,)", {"a": randn(g, 6), "b": randn(g, 6)},
             grad=["a", "b"]),
        Case("broadcasting: one query (1, 5) against 4 keys (4, 5)",
             {"a": randn(g, 1, 5), "b": 0.5 * randn(g, 4, 5)}, grad=["a", "b"]),
        Case("broadcasting (3, 1, 6) against (1, 4, 6): all 3 × 4 pairs",
             {"a": randn(g, 3, 1, 6), "b": randn(g, 1, 4, 6)}, grad=["a", "b"]),
        Case("dim=0: vectors in the columns of (6, 3) matrices",
             {"a": randn(g, 6, 3), "b": randn(g, 6, 3), "dim": 0}, keyword=["dim"],
             grad=["a", "b"]),
        Case("float64 (2, 3, 5), dim=1",
             {"a": randn(g, 2, 3, 5, dtype=torch.float64),
              "b": randn(g, 2, 3, 5, dtype=torch.float64), "dim": 1},
             keyword=["dim"], grad=["a", "b"]),
        Case("zero vectors: a[1], b[1] and b[3] are all zeros (their similarity is 0, and "
             "their gradients are finite, not NaN)",
             {"a": zero_a, "b": zero_b}, grad=["a", "b"]),
        Case("eps=0.5 with short vectors: each norm is clamped, max(‖a‖, eps)·max(‖b‖, eps)",
             {"a": 0.2 * randn(g, 4, 3), "b": randn(g, 4, 3), "eps": 0.5}, keyword=["eps"]),
        Case("shapes (3, 4) and (5, 4), which do not broadcast and must be refused",
             {"a": randn(g, 3, 4), "b": randn(g, 5, 4)}, raises=ValueError),
    ]
    if hidden:
        cases += [
            Case("batch 1 of 1-d vectors (1, 1) (cosine ±1)",
                 {"a": randn(g, 1, 1), "b": randn(g, 1, 1)}, grad=["a", "b"]),
            Case("dim=-2 in float64 (2, 9, 4) against (9, 1)",
                 {"a": randn(g, 2, 9, 4, dtype=torch.float64),
                  "b": randn(g, 9, 1, dtype=torch.float64), "dim": -2},
                 keyword=["dim"], grad=["a", "b"]),
            Case("large vectors (3, 257) of very different lengths",
                 {"a": 1e3 * randn(g, 3, 257), "b": 1e-3 * randn(g, 3, 257)},
                 grad=["a", "b"]),
            Case("a zero vector against a whole batch, float64",
                 {"a": torch.zeros(1, 5, dtype=torch.float64),
                  "b": randn(g, 6, 5, dtype=torch.float64)}),
            Case("shapes (2, 3) and (3, 2), which must be refused",
                 {"a": randn(g, 2, 3), "b": randn(g, 3, 2)}, raises=ValueError),
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
