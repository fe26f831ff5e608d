"""The check of ``TransformerBlock``, the pre-norm block x + attn(norm1(x)), then
x + mlp(norm2(x)) (ViT eq. 2-3), against a reference built from torch layers with the same
weights."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.runners import run_module
from course_utils.checks.vit._shared import forbidden, padding_mask, tokens_case
from course_utils.checks.vit.multi_head_self_attention import (
    _ManualAttention,
    _ReferenceAttention,
)


class _ReferenceBlock(nn.Module):
    """Pre-norm block from torch layers: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, variant: str = "pre",
                 attention: Callable[[int, int], nn.Module] = _ReferenceAttention):
        super().__init__()
        self.variant = variant
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        activation = nn.ReLU() if variant == "relu" else nn.GELU()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), activation, nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_weights: bool = False):
        if self.variant == "post":  # the original transformer's post-norm
            attended, weights = self.attn(x, mask, return_weights=True)
            x = self.norm1(x + attended)
            x = self.norm2(x + self.mlp(x))
        elif self.variant == "no residual":
            x, weights = self.attn(self.norm1(x), mask, return_weights=True)
            x = self.mlp(self.norm2(x))
        else:
            attended, weights = self.attn(self.norm1(x), mask, return_weights=True)
            x = x + attended  # (B, N, D), ViT eq. 2
            x = x + self.mlp(self.norm2(x))  # (B, N, D), ViT eq. 3
        return (x, weights) if return_weights else x


def _block_case(generator, name, dim, heads, mlp_ratio, batch, tokens, dtype=torch.float32,
                **kwargs) -> Case:
    init = {"dim": dim, "num_heads": heads, "mlp_ratio": mlp_ratio}
    return tokens_case(generator, name, _ReferenceBlock, init, batch, tokens, dtype, **kwargs)


def _block_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator
    cases = [
        _block_case(g, "D = 8, 2 heads, mlp_ratio 4, x (2, 5, 8)", 8, 2, 4.0, 2, 5),
        _block_case(g, "batch 1, D = 12, 3 heads, mlp_ratio 2, padding mask", 12, 3, 2.0, 1, 6,
                    mask=padding_mask([4], 6)),
        _block_case(g, "float64, D = 6, 2 heads", 6, 2, 4.0, 3, 4, dtype=torch.float64),
        _block_case(g, "return_weights=True: (output, the attention's weights)", 8, 4, 4.0, 2,
                    5, return_weights=True),
    ]
    if hidden:
        cases += [
            _block_case(g, "mlp_ratio 1.5 (hidden width int(6 · 1.5) = 9)", 6, 3, 1.5, 2, 4),
            _block_case(g, "65 tokens, D = 16, 4 heads", 16, 4, 4.0, 2, 65),
        ]
    return cases


TransformerBlock = Check(
    exercise="TransformerBlock",
    reference=_ReferenceBlock,
    cases=_block_cases,
    run=run_module,
    mistakes=[
        Mistake("this is the post-norm block of the original transformer (norm after the "
                "residual sum); the ViT is pre-norm: x + attn(norm1(x)), then "
                "x + mlp(norm2(x)).",
                partial(_ReferenceBlock, variant="post", attention=_ManualAttention)),
        Mistake("the residual connections are missing: add each sub-layer's output to its "
                "input (x = x + ...).",
                partial(_ReferenceBlock, variant="no residual", attention=_ManualAttention)),
        Mistake("the MLP uses ReLU; the ViT's MLP uses GELU (nn.GELU()).",
                partial(_ReferenceBlock, variant="relu", attention=_ManualAttention)),
    ],
    forbidden=forbidden(attention=True,
                        allowed="Use your MultiHeadSelfAttention, nn.LayerNorm and nn.Linear."),
)
