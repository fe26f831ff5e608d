"""The check of ``CrossAttention``: queries from the text x (B, T, D), keys and values from the
image tokens ``context`` (B, M, D), against ``nn.MultiheadAttention(batch_first=True)`` given
the same weights (its in_proj is the rows of ``q`` then those of ``kv``)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from course_utils.checks.captioning._shared import (
    attend,
    forbidden,
    module_case,
    randn,
    real_mask,
    torch_attention,
)
from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.runners import INIT, run_module


def validate(x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None,
             dim: int) -> None:
    """The shapes CrossAttention accepts, or a ValueError saying which one is wrong."""
    if x.ndim != 3 or x.shape[-1] != dim:
        raise ValueError(f"expected x (B, T, {dim}), got {tuple(x.shape)}")
    if context.ndim != 3 or context.shape[0] != x.shape[0] or context.shape[-1] != dim:
        raise ValueError(f"expected context ({x.shape[0]}, M, {dim}), got "
                         f"{tuple(context.shape)}")
    if context_mask is not None and tuple(context_mask.shape) != tuple(context.shape[:2]):
        raise ValueError(f"expected context_mask {tuple(context.shape[:2])}, got "
                         f"{tuple(context_mask.shape)}")


class ReferenceCrossAttention(nn.Module):
    """``nn.MultiheadAttention(batch_first=True)`` whose weights are ``q``, ``kv`` and ``proj``.

    ``context_mask`` (B, M) is True where an image token is real; torch's key_padding_mask
    means the opposite (True = ignore), so it gets ``~context_mask``.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads = dim, num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        validate(x, context, context_mask, self.dim)
        weight = torch.cat([self.q.weight, self.kv.weight])  # (3·D, D): q, k, v rows
        bias = torch.cat([self.q.bias, self.kv.bias])  # (3·D,)
        padding = None if context_mask is None else ~context_mask
        return torch_attention(x, context, weight, bias, self.proj, self.num_heads,
                               key_padding_mask=padding)  # (B, T, D)


class ManualCrossAttention(ReferenceCrossAttention):
    """Cross-attention by the formula, with the switches that make the common mistakes.

    ``source``: where queries and keys/values come from ("right": q from x, k and v from the
    context; "text": all from x; "swapped": q from the context, k and v from x).
    """

    def __init__(self, dim: int, num_heads: int, source: str = "right", scaled: bool = True,
                 split: str = "right", invert_mask: bool = False):
        super().__init__(dim, num_heads)
        self.source, self.scaled, self.split, self.invert_mask = source, scaled, split, \
            invert_mask

    def forward(self, x, context, context_mask=None):
        validate(x, context, context_mask, self.dim)
        queries, keys = {"right": (x, context), "text": (x, x),
                         "swapped": (context, x)}[self.source]
        mask = context_mask
        if mask is not None and self.invert_mask:
            mask = ~mask
        if mask is not None and mask.shape[1] != keys.shape[1]:
            mask = None  # the mask does not fit keys taken from elsewhere
        k, v = self.kv(keys).chunk(2, dim=-1)  # each (B, M, D)
        out = attend(self.q(queries), k, v, self.num_heads, mask, scaled=self.scaled,
                     split=self.split)
        return self.proj(out)


def _attention_case(generator, name, dim, heads, batch, tokens, images, dtype=torch.float32,
                    lengths=None, **kwargs) -> Case:
    forward = {"x": randn(generator, batch, tokens, dim, dtype=dtype),
               "context": randn(generator, batch, images, dim, dtype=dtype)}
    if lengths is not None:
        forward["context_mask"] = real_mask(lengths, images)
    return module_case(generator, name, ReferenceCrossAttention,
                       {"dim": dim, "num_heads": heads}, forward, dtype, **kwargs)


def _cross_attention_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator
    cases = [
        _attention_case(g, "D = 8, 2 heads, 5 text tokens attending to 7 image tokens", 8, 2,
                        2, 5, 7),
        _attention_case(g, "batch 1, D = 12, 3 heads, 4 text tokens, 9 image tokens of which "
                           "the last 3 are padding (context_mask False)", 12, 3, 1, 4, 9,
                        lengths=[6]),
        _attention_case(g, "float64, D = 6, 1 head, 3 text tokens, image tokens of lengths "
                           "5, 2, 4", 6, 1, 3, 3, 5, dtype=torch.float64, lengths=[5, 2, 4]),
        _attention_case(g, "D = 16, 4 heads, 6 text tokens, 4 image tokens, every one real "
                           "(a mask of all True)", 16, 4, 2, 6, 4, lengths=[4, 4]),
        _attention_case(g, "context of width 7 for D = 8, which it must refuse", 8, 2, 2, 3,
                        4, raises=ValueError),
    ]
    cases[-1].inputs["forward:context"] = randn(g, 2, 4, 7)
    if hidden:
        cases[-1:-1] = [
            _attention_case(g, "a single text token, D = 8, 2 heads, 17 image tokens (a 4×4 "
                               "grid + [CLS])", 8, 2, 3, 1, 17, lengths=[17, 10, 3]),
            _attention_case(g, "float64, D = 12, 4 heads, 11 text tokens, 2 image tokens", 12,
                            4, 2, 11, 2, dtype=torch.float64),
            _attention_case(g, "a single image token, D = 9, 3 heads", 9, 3, 2, 5, 1),
            _attention_case(g, "D = 10 with 3 heads (10 is not divisible by 3), which it must "
                               "refuse", 9, 3, 2, 4, 4, raises=ValueError),
            _attention_case(g, "context_mask of shape (2, 5) for 4 image tokens, which it must "
                               "refuse", 8, 2, 2, 3, 4, lengths=[4, 2], raises=ValueError),
        ]
        cases[-3].inputs[INIT + "dim"] = 10  # the weights are those of D = 9
        cases[-2].inputs["forward:context_mask"] = real_mask([5, 2], 5)
    return cases


CrossAttention = Check(
    exercise="CrossAttention",
    reference=ReferenceCrossAttention,
    cases=_cross_attention_cases,
    run=run_module,
    mistakes=[
        Mistake("the keys and values come from the text: this is self-attention. In "
                "cross-attention the queries come from the text (q(x)) and the keys and "
                "values from the image tokens (kv(context)).", partial(
                    ManualCrossAttention, source="text")),
        Mistake("the queries come from the image tokens and the keys and values from the "
                "text: the roles are swapped. Each *text* token asks (q(x)) and the image "
                "tokens answer (kv(context)); the output has one row per text token, "
                "(B, T, D).", partial(ManualCrossAttention, source="swapped")),
        Mistake("the mask is inverted: context_mask is True for a real image token, which "
                "may be attended; False marks padding, whose scores become -inf. (torch's "
                "key_padding_mask means the opposite.)",
                partial(ManualCrossAttention, invert_mask=True)),
        Mistake("the scores are not scaled: divide q·kᵀ by √d, d = D / num_heads the width "
                "of one head (Vaswani et al. 2017, eq. 1).",
                partial(ManualCrossAttention, scaled=False)),
        Mistake("the heads are split with a reshape alone: (B, N, D) read as (B, h, N, d) "
                "mixes tokens and heads. Reshape to (B, N, h, d) and transpose(1, 2) to "
                "(B, h, N, d); after attention, transpose back before the reshape to "
                "(B, T, D).", partial(ManualCrossAttention, split="wrong")),
    ],
    forbidden=forbidden("Use nn.Linear, reshape, transpose and your attention (or "
                        "F.scaled_dot_product_attention, which you wrote in notebook 02)."),
)
