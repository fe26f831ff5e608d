"""The check of ``scaled_dot_product_attention``, softmax(q kᵀ / √d) v, against
``F.scaled_dot_product_attention`` (the weights by the formula of Vaswani et al. 2017, eq. 1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.vit._shared import forbidden, randn


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2 or q.shape[-1] != k.shape[-1] \
            or k.shape[-2] != v.shape[-2]:
        raise ValueError("expected q (..., Nq, d), k (..., Nk, d), v (..., Nk, dv)")


def attention_by_formula(q, k, v, mask=None, scale=None, softmax_dim=-1, fill=-math.inf,
                         invert=False):
    """softmax(q kᵀ · scale) v and the weights (Vaswani et al. 2017, eq. 1), with the knobs
    that make the common mistakes; ``mask`` is True where a query may attend to a key."""
    _check_qkv(q, k, v)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., Nq, Nk)
    if mask is not None:
        scores = scores.masked_fill(mask if invert else ~mask, fill)
    weights = scores.softmax(dim=softmax_dim)
    return weights @ v, weights  # (..., Nq, dv), (..., Nq, Nk)


def _reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         mask: torch.Tensor | None = None):
    _check_qkv(q, k, v)
    output = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (..., Nq, dv)
    weights = attention_by_formula(q, k, v, mask)[1]  # (..., Nq, Nk), Vaswani et al. eq. 1
    return output, weights


def _attention_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def t(*shape, dtype=torch.float32):
        return randn(generator, *shape, dtype=dtype)

    def keep_one(mask):  # every query may attend to at least one key (no all-False rows)
        mask = mask.clone()
        mask[..., 0] = True
        return mask

    def case(name, q, k, v, mask=None, **kwargs):
        inputs = {"q": q, "k": k, "v": v}
        if mask is not None:
            inputs["mask"] = mask
        return Case(name, inputs, grad=["q", "k", "v"], **kwargs)

    causal = torch.ones(5, 5, dtype=torch.bool).tril()  # row 4 may see every key
    padding = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])[:, None, None, :]
    cases = [
        case("one head, q k v (2, 5, 4)", t(2, 5, 4), t(2, 5, 4), t(2, 5, 4)),
        case("batch 1, 3 heads, 4 queries and 7 keys, d = 6",
             t(1, 3, 4, 6), t(1, 3, 7, 6), t(1, 3, 7, 6)),
        case("2 heads, d = 8, a causal (5, 5) mask", t(2, 2, 5, 8), t(2, 2, 5, 8),
             t(2, 2, 5, 8), mask=causal),
        case("a key-padding mask (2, 1, 1, 6): the second item's last 2 keys are padding",
             t(2, 3, 6, 4), t(2, 3, 6, 4), t(2, 3, 6, 4), mask=padding),
        case("float64, random mask (2, 2, 3, 5)", t(2, 2, 3, 4, dtype=torch.float64),
             t(2, 2, 5, 4, dtype=torch.float64), t(2, 2, 5, 4, dtype=torch.float64),
             mask=keep_one(torch.rand(2, 2, 3, 5, generator=generator) > 0.5)),
        Case("q with d = 4 but k with d = 5, which it must refuse",
             {"q": t(2, 3, 4), "k": t(2, 3, 5), "v": t(2, 3, 5)}, raises=ValueError),
    ]
    if hidden:
        cases[-1:-1] = [
            case("values of another width (dv = 3)", t(2, 4, 5), t(2, 6, 5), t(2, 6, 3)),
            case("two batch axes (2, 2, 3, 4, 8)", t(2, 2, 3, 4, 8), t(2, 2, 3, 4, 8),
                 t(2, 2, 3, 4, 8)),
            case("large scores (q and k ×6), d = 16", 6 * t(2, 3, 16), 6 * t(2, 5, 16),
                 t(2, 5, 16)),
            case("only one key allowed per query", t(1, 2, 4, 4), t(1, 2, 4, 4),
                 t(1, 2, 4, 4), mask=torch.eye(4, dtype=torch.bool)),
            Case("4 keys but 3 values, which it must refuse",
                 {"q": t(2, 3, 4), "k": t(2, 4, 4), "v": t(2, 3, 4)}, raises=ValueError),
        ]
    return cases


scaled_dot_product_attention = Check(
    exercise="scaled_dot_product_attention",
    reference=_reference_attention,
    cases=_attention_cases,
    mistakes=[
        Mistake("the scores are not scaled: divide q kᵀ by √d (d = q.shape[-1]), or the "
                "softmax saturates as d grows.",
                lambda q, k, v, mask=None: attention_by_formula(q, k, v, mask, scale=1.0)),
        Mistake("the scores are divided by d; divide by √d (the standard deviation of a dot "
                "product of d unit-variance numbers).",
                lambda q, k, v, mask=None: attention_by_formula(q, k, v, mask,
                                                                scale=1 / q.shape[-1])),
        Mistake("the softmax runs over the queries (dim=-2); it must run over the keys "
                "(dim=-1), so that each query's weights sum to 1.",
                lambda q, k, v, mask=None: attention_by_formula(q, k, v, mask, softmax_dim=-2)),
        Mistake("the mask is inverted: True means 'may attend', so fill the scores where the "
                "mask is False (~mask) with -inf.",
                lambda q, k, v, mask=None: attention_by_formula(q, k, v, mask, invert=True)),
        Mistake("masked scores are set to 0, which still gets weight e⁰ = 1 in the softmax; "
                "set them to -inf (float('-inf')) so that their weight is exactly 0.",
                lambda q, k, v, mask=None: attention_by_formula(q, k, v, mask, fill=0.0)),
    ],
    forbidden=forbidden(attention=True, allowed="Use matmul (@), softmax and masked_fill."),
)
