"""Check of similarity_matrix(a, b): (N, D), (M, D) -> (N, M) against ``F.cosine_similarity``
of every pair (refused while the student's code runs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.checks.case import Case, Mistake
from course_utils.checks.contrastive._inputs import randn
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden


def _reference_similarity_matrix(a, b):
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (N, D) and (M, D), got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1)  # (N, M)


def _rows(x, dim=-1):
    """``x`` scaled to unit length along ``dim`` (norms clamped to 1e-8)."""
    return x / torch.linalg.vector_norm(x, dim=dim, keepdim=True).clamp_min(1e-8)


def _similarity_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator
    with_zero = randn(g, 5, 4)
    with_zero[2] = 0.0
    cases = [
        Case("a (4, 8) against b (6, 8)", {"a": randn(g, 4, 8), "b": 2 * randn(g, 6, 8)},
             grad=["a", "b"]),
        Case("a (7, 3) against itself-sized b (7, 3)", {"a": randn(g, 7, 3),
                                                         "b": randn(g, 7, 3)},
             grad=["a", "b"]),
        Case("one row a (1, 5) against b (3, 5)", {"a": randn(g, 1, 5), "b": randn(g, 3, 5)},
             grad=["a", "b"]),
        Case("float64, a (3, 6) against b (2, 6)",
             {"a": randn(g, 3, 6, dtype=torch.float64), "b": randn(g, 2, 6, dtype=torch.float64)},
             grad=["a", "b"]),
        Case("a zero row in b (5, 4): its column is 0, not NaN",
             {"a": randn(g, 3, 4), "b": with_zero}),
        Case("a (3, 4) and b (3, 5), whose widths differ and must be refused",
             {"a": randn(g, 3, 4), "b": randn(g, 3, 5)}, raises=ValueError),
        Case("a (2, 3, 4), not a matrix, which must be refused",
             {"a": randn(g, 2, 3, 4), "b": randn(g, 3, 4)}, raises=ValueError),
    ]
    if hidden:
        cases += [
            Case("a (33, 17) against b (1, 17)", {"a": randn(g, 33, 17), "b": randn(g, 1, 17)},
                 grad=["a", "b"]),
            Case("1-d embeddings, a (4, 1) against b (5, 1)",
                 {"a": randn(g, 4, 1, dtype=torch.float64),
                  "b": randn(g, 5, 1, dtype=torch.float64)}, grad=["a", "b"]),
            Case("a vector (4,), not a matrix, which must be refused",
                 {"a": randn(g, 4), "b": randn(g, 3, 4)}, raises=ValueError),
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
