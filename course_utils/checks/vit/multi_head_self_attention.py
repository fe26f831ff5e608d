"""The check of ``MultiHeadSelfAttention``, (B, N, D) -> (B, N, D), against
``nn.MultiheadAttention(batch_first=True)`` sharing the same ``qkv`` and ``proj`` weights."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.runners import INIT, run_module
from course_utils.checks.vit._shared import forbidden, padding_mask, tokens_case
from course_utils.checks.vit.scaled_dot_product_attention import attention_by_formula


class _ReferenceAttention(nn.Module):
    """``nn.MultiheadAttention(batch_first=True)`` whose weights are ``qkv`` and ``proj``.

    ``mask`` is True where a query may attend to a key: a ``(B, N)`` key-padding mask, or a mask
    broadcastable to ``(B, h, N, N)``; torch's masks mean the opposite (True = ignore).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError("dim is not divisible by num_heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mha = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        # share the parameters: in_proj is q, k, v stacked, exactly the rows of qkv
        self.mha.in_proj_weight, self.mha.in_proj_bias = self.qkv.weight, self.qkv.bias
        self.mha.out_proj.weight, self.mha.out_proj.bias = self.proj.weight, self.proj.bias

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_weights: bool = False):
        if x.ndim != 3 or x.shape[-1] != self.qkv.in_features:
            raise ValueError("expected x (B, N, D)")
        batch, tokens, _ = x.shape
        padding, attn_mask = None, None
        if mask is not None and mask.ndim == 2:
            padding = ~mask  # (B, N): True = a padding key to ignore
        elif mask is not None:
            full = mask.expand(batch, self.num_heads, tokens, tokens)
            attn_mask = ~full.reshape(batch * self.num_heads, tokens, tokens)
        out, weights = self.mha(x, x, x, key_padding_mask=padding, attn_mask=attn_mask,
                                need_weights=return_weights, average_attn_weights=False)
        return (out, weights) if return_weights else out  # (B, N, D), (B, h, N, N)


class _ManualAttention(nn.Module):
    """Multi-head attention by hand, with the knobs that make the common mistakes."""

    def __init__(self, dim: int, num_heads: int, split: str = "right", merge: str = "right",
                 invert_mask: bool = False):
        super().__init__()
        self.num_heads, self.split, self.merge, self.invert_mask = num_heads, split, merge, \
            invert_mask
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None, return_weights=False):
        batch, tokens, dim = x.shape
        h, d = self.num_heads, dim // self.num_heads
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # each (B, N, D)
        if self.split == "right":
            q, k, v = (t.reshape(batch, tokens, h, d).transpose(1, 2) for t in (q, k, v))
        else:  # (B, N, D) read as (B, h, N, d) without the transpose
            q, k, v = (t.reshape(batch, h, tokens, d) for t in (q, k, v))
        if mask is not None and mask.ndim == 2:
            mask = mask[:, None, None, :]
        if mask is not None and self.invert_mask:
            mask = ~mask
        out, weights = attention_by_formula(q, k, v, mask)  # (B, h, N, d), (B, h, N, N)
        if self.merge == "right":
            out = out.transpose(1, 2).reshape(batch, tokens, dim)
        else:
            out = out.reshape(batch, tokens, dim)
        out = self.proj(out)
        return (out, weights) if return_weights else out


_ATTENTION_MISTAKES = [
    Mistake("the heads are split without the transpose: reshape (B, N, D) to (B, N, h, d) and "
            "then transpose to (B, h, N, d); reshaping straight to (B, h, N, d) mixes tokens "
            "and heads.", partial(_ManualAttention, split="wrong")),
    Mistake("the heads are merged without the transpose: (B, h, N, d) must go back to "
            "(B, N, h, d) (transpose(1, 2)) before the reshape to (B, N, D).",
            partial(_ManualAttention, merge="wrong")),
    Mistake("the heads are split and merged with reshapes alone: (B, N, D) read as "
            "(B, h, N, d) puts pieces of different tokens in one head's row. Reshape to "
            "(B, N, h, d) and transpose(1, 2) to (B, h, N, d); after attention, transpose "
            "back to (B, N, h, d) before the reshape to (B, N, D).",
            partial(_ManualAttention, split="wrong", merge="wrong")),
    Mistake("the padding mask is inverted: True marks a real token that may be attended "
            "(torch's key_padding_mask means the opposite).",
            partial(_ManualAttention, invert_mask=True)),
]


def _attention_case(generator, name, dim, heads, batch, tokens, dtype=torch.float32,
                    **kwargs) -> Case:
    return tokens_case(generator, name, _ReferenceAttention, {"dim": dim, "num_heads": heads},
                       batch, tokens, dtype, **kwargs)


def _mhsa_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator
    cases = [
        _attention_case(g, "D = 8, 2 heads, x (2, 5, 8)", 8, 2, 2, 5),
        _attention_case(g, "batch 1, D = 12, 3 heads, 7 tokens, padding mask (1, 7) with 2 "
                           "padding tokens", 12, 3, 1, 7, mask=padding_mask([5], 7)),
        _attention_case(g, "float64, D = 6, 1 head, padding mask of lengths 4, 2, 3", 6, 1,
                        3, 4, dtype=torch.float64, mask=padding_mask([4, 2, 3], 4)),
        _attention_case(g, "return_weights=True: (output, weights (B, h, N, N)), D = 8, "
                           "4 heads", 8, 4, 2, 5, mask=padding_mask([5, 3], 5),
                        return_weights=True),
        _attention_case(g, "D = 10 with 3 heads (10 is not divisible by 3), which it must "
                           "refuse", 9, 3, 2, 4, raises=ValueError),
    ]
    cases[-1].inputs[INIT + "dim"] = 10  # the weights are those of D = 9
    if hidden:
        causal = torch.ones(6, 6, dtype=torch.bool).tril()[None, None]
        cases[-1:-1] = [
            _attention_case(g, "D = 16, 8 heads, a causal mask (1, 1, 6, 6)", 16, 8, 2, 6,
                            mask=causal),
            _attention_case(g, "a single token", 8, 2, 3, 1),
            _attention_case(g, "65 tokens (a 32×32 image in 4×4 patches + [CLS])", 16, 4, 2, 65,
                            return_weights=True),
        ]
    return cases


MultiHeadSelfAttention = Check(
    exercise="MultiHeadSelfAttention",
    reference=_ReferenceAttention,
    cases=_mhsa_cases,
    run=run_module,
    mistakes=_ATTENTION_MISTAKES,
    forbidden=forbidden(attention=True,
                        allowed="Use your scaled_dot_product_attention, reshape and transpose."),
)
