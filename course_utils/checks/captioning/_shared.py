"""What the exercises of notebook 07 share: the library attention they refuse (``forbidden``),
seeded inputs (``randn``, ``real_mask``), module cases (``module_case``), torch's attention
with a module's own weights (``torch_attention``, the references' engine), attention by the
formula with the switches that make the common mistakes (``attend``, the mistakes'), and a
``Check`` whose extra outputs carry hints of their own (``KeyHintCheck``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from course_utils.checks.case import Case, Outputs
from course_utils.checks.compare import difference
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden
from course_utils.checks.runners import FORWARD, INIT, PARAM, random_parameters

#: torch's multi-head attention, as functions and as the kernels they dispatch to. The fused
#: ``F.scaled_dot_product_attention`` stays allowed: notebook 02 had the students write it.
ATTENTION_FUNCTIONS = (
    "torch.nn.functional.multi_head_attention_forward",
    "torch._native_multi_head_attention",
    "torch._transformer_encoder_layer_fwd",
)
ATTENTION_KERNELS = ("_native_multi_head_attention", "_transformer_encoder_layer_fwd")
#: The library modules that would do an exercise's work (refused when constructed).
LIBRARY_MODULES = (
    "torch.nn.MultiheadAttention",
    "torch.nn.TransformerEncoderLayer",
    "torch.nn.TransformerEncoder",
    "torch.nn.TransformerDecoderLayer",
    "torch.nn.TransformerDecoder",
    "torch.nn.Transformer",
    "course_utils.blocks.Attention",
    "course_utils.blocks.TransformerBlock",
    "course_utils.blocks.TextTransformer",
    "course_utils.blocks.transformer.Attention",
    "course_utils.blocks.transformer.TransformerBlock",
    "course_utils.blocks.transformer.TextTransformer",
)


def forbidden(allowed: str) -> Forbidden:
    """torch's and the course's multi-head attention refused; ``allowed`` says what to use."""
    return Forbidden(functions=ATTENTION_FUNCTIONS, aten=ATTENTION_KERNELS,
                     attributes=LIBRARY_MODULES, allowed=allowed)


def randn(generator: torch.Generator, *shape: int, dtype=torch.float32) -> torch.Tensor:
    """Standard normal values of ``shape``, drawn in float64 from ``generator`` (the same numbers
    whatever ``dtype``)."""
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


def real_mask(lengths: Sequence[int], tokens: int) -> torch.Tensor:
    """(B, M) mask, True for the first ``lengths[b]`` tokens of item b (real), False after."""
    return torch.arange(tokens)[None, :] < torch.tensor(lengths)[:, None]  # (B, M)


def module_case(generator: torch.Generator, name: str, reference: Callable[..., nn.Module],
                init: dict[str, Any], forward: dict[str, Any], dtype=torch.float32,
                **kwargs) -> Case:
    """A case of a module exercise for ``runners.run_module``.

    ``init`` are the constructor's arguments (by keyword), ``forward`` the forward's (the first
    two by position, the others, ``context_mask``, by keyword); the weights are
    ``random_parameters`` of ``reference(**init)``. Gradients are compared for the forward's
    floating-point tensors and every parameter, unless the case must raise.
    """
    weights = random_parameters(reference(**init), generator, dtype)
    inputs = {**{INIT + k: v for k, v in init.items()}, **weights,
              **{FORWARD + k: v for k, v in forward.items()}}
    grad = [] if kwargs.get("raises") else [
        *(k for k, v in forward.items() if torch.is_tensor(v) and v.is_floating_point()),
        *(k.removeprefix(PARAM) for k in weights)]
    return Case(name, inputs, keyword=list(forward)[2:], grad=grad, **kwargs)


def torch_attention(query: torch.Tensor, context: torch.Tensor, in_weight: torch.Tensor,
                    in_bias: torch.Tensor, proj: nn.Linear, num_heads: int,
                    key_padding_mask: torch.Tensor | None = None,
                    attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``nn.MultiheadAttention(batch_first=True)`` run with the given weights: ``in_weight``
    (3·D, D) is the query, key and value rows stacked, ``proj`` the output projection. The masks
    are torch's (True = ignore). Gradients reach the given tensors."""
    dim = query.shape[-1]
    mha = nn.MultiheadAttention(dim, num_heads, batch_first=True, device="meta")
    weights = {"in_proj_weight": in_weight, "in_proj_bias": in_bias,
               "out_proj.weight": proj.weight, "out_proj.bias": proj.bias}
    out, _ = functional_call(mha, weights, (query, context, context),
                             {"key_padding_mask": key_padding_mask, "attn_mask": attn_mask,
                              "need_weights": False})
    return out  # (B, T, D)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int,
           mask: torch.Tensor | None = None, *, scaled: bool = True,
           split: str = "right") -> torch.Tensor:
    """Multi-head attention by the formula, heads merged: q (B, T, D), k and v (B, M, D) ->
    (B, T, D). ``mask`` is True where a query may attend to a key, (B, M) or broadcastable to
    (B, h, T, M). ``scaled=False`` leaves out 1/√d; ``split="wrong"`` splits and merges the
    heads with reshapes alone."""
    batch, tokens, dim = q.shape
    h, d = num_heads, dim // num_heads

    def heads(t: torch.Tensor) -> torch.Tensor:
        if split == "right":
            return t.reshape(batch, t.shape[1], h, d).transpose(1, 2)  # (B, h, N, d)
        return t.reshape(batch, h, t.shape[1], d)  # tokens and heads mixed up

    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(-2, -1)  # (B, h, T, M)
    if scaled:
        scores = scores / math.sqrt(d)
    if mask is not None:
        mask = mask[:, None, None, :] if mask.ndim == 2 else mask
        scores = scores.masked_fill(~mask, -math.inf)
    out = scores.softmax(dim=-1) @ v  # (B, h, T, d)
    if split == "right":
        return out.transpose(1, 2).reshape(batch, tokens, dim)
    return out.reshape(batch, tokens, dim)


@dataclass
class KeyHintCheck(Check):
    """A ``Check`` whose run adds outputs that stand for a property (the caller's input left
    unchanged, no leak from the future, the number of calls): when the student's code fails
    on such a key and matches no known mistake, the failure gets that key's hint, whatever the
    code that broke the property."""

    key_hints: dict[str, str] = field(default_factory=dict)

    def hint(self, case: Case, actual: Outputs, expected: Outputs | None = None) -> str | None:
        known = super().hint(case, actual, expected)
        if known is not None or expected is None or case.raises is not None:
            return known
        tolerance = case.tolerance or self.tolerance
        for key, hint in self.key_hints.items():
            if key in expected and \
                    difference(key, actual.get(key), expected[key], tolerance) is not None:
                return hint
        return None
