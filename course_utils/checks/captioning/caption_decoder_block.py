"""The check of ``CaptionDecoderBlock``, the pre-norm decoder block of a captioner::

    x = x + proj(causal_self_attention(qkv(norm1(x))))
    x = x + cross_attn(norm2(x), context, context_mask)
    x = x + mlp(norm3(x))

against a reference built from torch layers with the same weights (a causal
``nn.MultiheadAttention`` and a cross ``nn.MultiheadAttention``), and for causality itself: its
first case changes the text tokens from position t on and requires the outputs before t to stay
as they were (a failure there gets the hint on the causal mask, ``KeyHintCheck``).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch
from torch import nn

from course_utils.checks.captioning._shared import (
    KeyHintCheck,
    attend,
    forbidden,
    module_case,
    randn,
    real_mask,
    torch_attention,
)
from course_utils.checks.captioning.cross_attention import (
    ManualCrossAttention,
    ReferenceCrossAttention,
)
from course_utils.checks.case import TOLERANCES, Case, Mistake, Outputs
from course_utils.checks.runners import FORWARD, run_module

#: The key of the causal case's outputs: how far outputs[:, :t] move when x[:, t:] changes.
LEAK = "the largest change of outputs[:, :t] when x[:, t:] changes"
CAUSAL_HINT = ("the causal mask lets a text token see the tokens after it, so a caption could "
               "copy the word it must predict: position i may attend to positions j <= i only "
               "(a lower-triangular mask, True on and below the diagonal, or "
               "F.scaled_dot_product_attention(..., is_causal=True)).")


class ReferenceDecoderBlock(nn.Module):
    """The pre-norm decoder block from torch layers; ``manual=True`` builds it by the formula
    instead (the mistakes do, since torch's attention is refused while they run as a student's
    code would), with the switches that make the common mistakes (``variant``, ``causal``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *,
                 manual: bool = False, variant: str = "pre", causal: str = "past"):
        super().__init__()
        self.num_heads, self.manual, self.variant, self.causal = num_heads, manual, variant, \
            causal
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = (ManualCrossAttention if manual else ReferenceCrossAttention)(
            dim, num_heads)
        self.norm3 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def self_attention(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.shape[1]
        past = torch.ones(tokens, tokens, dtype=torch.bool, device=x.device).tril()  # (T, T)
        if not self.manual:  # torch's attn_mask: True = may NOT attend
            return torch_attention(x, x, self.qkv.weight, self.qkv.bias, self.proj,
                                   self.num_heads, attn_mask=~past)
        allowed = {"past": past, "none": None, "future": past.T}[self.causal]
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # each (B, T, D)
        mask = None if allowed is None else allowed[None, None]  # (1, 1, T, T)
        return self.proj(attend(q, k, v, self.num_heads, mask))

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.norm1.normalized_shape[0]:
            raise ValueError(f"expected x (B, T, D), got {tuple(x.shape)}")
        cross = (lambda h: self.cross_attn(h, h)) if self.variant == "text cross" else \
            (lambda h: self.cross_attn(h, context, context_mask))
        if self.variant == "post":  # the original transformer's post-norm
            x = self.norm1(x + self.self_attention(x))
            x = self.norm2(x + cross(x))
            return self.norm3(x + self.mlp(x))
        missing = self.variant.removeprefix("no residual ")
        x = (0 if missing == "self" else x) + self.self_attention(self.norm1(x))
        x = (0 if missing == "cross" else x) + cross(self.norm2(x))
        return (0 if missing == "mlp" else x) + self.mlp(self.norm3(x))  # (B, T, D)


def _run_block(implementation, case: Case) -> Outputs:
    """``run_module``; on the causal case, also run on x changed from position t on and add
    ``LEAK``, the largest change of the outputs before t (0.0 when they cannot be compared:
    the outputs' own comparison then says why)."""
    if "causal:t" not in case.inputs:
        return run_module(implementation, case)
    inputs = {k: v for k, v in case.inputs.items() if not k.startswith("causal:")}
    first = run_module(implementation, replace(case, inputs=inputs))
    changed = {**inputs, FORWARD + "x": case.inputs["causal:changed"]}
    second = run_module(implementation, replace(case, inputs=changed))
    t, a, b = case.inputs["causal:t"], first.get("output"), second.get("output")
    leak = 0.0
    if type(a) is torch.Tensor and type(b) is torch.Tensor and a.shape == b.shape and \
            a.ndim == 3 and a.is_floating_point():
        leak = float((b[:, :t] - a[:, :t]).detach().abs().nan_to_num(torch.inf).max())
        atol = TOLERANCES.get(a.dtype, TOLERANCES[torch.float32])[1]
        leak = 0.0 if leak <= atol else float(f"{leak:.4g}")  # rounding noise is no leak
    return {LEAK: leak, **first}


def _block_case(generator, name, dim, heads, mlp_ratio, batch, tokens, images,
                dtype=torch.float32, lengths=None, **kwargs) -> Case:
    forward = {"x": randn(generator, batch, tokens, dim, dtype=dtype),
               "context": randn(generator, batch, images, dim, dtype=dtype)}
    if lengths is not None:
        forward["context_mask"] = real_mask(lengths, images)
    init = {"dim": dim, "num_heads": heads, "mlp_ratio": mlp_ratio}
    return module_case(generator, name, ReferenceDecoderBlock, init, forward, dtype, **kwargs)


def _causal_case(generator, name, t, *args, **kwargs) -> Case:
    """A block case whose x changes from position ``t`` on in a second run (no gradients)."""
    case = _block_case(generator, name, *args, **kwargs)
    x = case.inputs[FORWARD + "x"]
    changed = x.clone()
    changed[:, t:] = randn(generator, *changed[:, t:].shape, dtype=x.dtype)
    case.inputs.update({"causal:t": t, "causal:changed": changed})
    return replace(case, grad=[])


def _block_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator
    cases = [
        _causal_case(g, "causality: x[:, 3:] changed, outputs[:, :3] must not move; D = 8, "
                        "2 heads, 6 text tokens, 5 image tokens", 3, 8, 2, 4.0, 2, 6, 5),
        _block_case(g, "D = 8, 2 heads, mlp_ratio 4, 5 text tokens, 7 image tokens", 8, 2,
                    4.0, 2, 5, 7),
        _block_case(g, "batch 1, D = 12, 3 heads, mlp_ratio 2, 6 text tokens, 9 image tokens "
                       "(the last 4 padding)", 12, 3, 2.0, 1, 6, 9, lengths=[5]),
        _block_case(g, "float64, D = 6, 2 heads, 4 text tokens, image tokens of lengths 3, "
                       "5, 1", 6, 2, 4.0, 3, 4, 5, dtype=torch.float64, lengths=[3, 5, 1]),
        _block_case(g, "context of width 5 for D = 6, which it must refuse", 6, 2, 4.0, 2, 4,
                    3, raises=ValueError),
    ]
    cases[-1].inputs[FORWARD + "context"] = randn(g, 2, 3, 5)
    if hidden:
        cases[-1:-1] = [
            _causal_case(g, "causality: x[:, 1:] changed, outputs[:, :1] must not move; "
                            "float64, D = 12, 4 heads", 1, 12, 4, 2.0, 3, 7, 4,
                         dtype=torch.float64, lengths=[4, 2, 3]),
            _block_case(g, "a single text token, D = 8, 4 heads, 17 image tokens", 8, 4, 4.0,
                        2, 1, 17),
            _block_case(g, "mlp_ratio 1.5 (hidden width int(6 · 1.5) = 9), 9 text tokens", 6,
                        3, 1.5, 2, 9, 3, lengths=[3, 2]),
        ]
    return cases


def _mistake(**switches):
    return partial(ReferenceDecoderBlock, manual=True, **switches)


CaptionDecoderBlock = KeyHintCheck(
    exercise="CaptionDecoderBlock",
    reference=ReferenceDecoderBlock,
    cases=_block_cases,
    run=_run_block,
    mistakes=[
        Mistake("the causal mask is missing: every text token attends to the whole caption, "
                "the very words it must predict included. Position i may attend to positions "
                "j <= i only: F.scaled_dot_product_attention(..., is_causal=True), or a "
                "lower-triangular mask (True on and below the diagonal).",
                _mistake(causal="none")),
        Mistake("the causal mask is on the wrong side: each token attends to itself and the "
                "tokens *after* it. It must see the past, j <= i: keep the lower triangle "
                "(torch.ones(T, T).tril(), True = may attend).", _mistake(causal="future")),
        Mistake("this is the post-norm block of the original transformer (norm after each "
                "residual sum); the captioner's block is pre-norm: x + sublayer(norm(x)) for "
                "each of the three sub-layers.", _mistake(variant="post")),
        Mistake("the cross-attention takes its keys and values from the text: pass the image "
                "tokens, cross_attn(norm2(x), context, context_mask).",
                _mistake(variant="text cross")),
        Mistake("the residual connection around the self-attention is missing: "
                "x = x + proj(attention(...)).", _mistake(variant="no residual self")),
        Mistake("the residual connection around the cross-attention is missing: "
                "x = x + cross_attn(norm2(x), context, context_mask).",
                _mistake(variant="no residual cross")),
        Mistake("the residual connection around the MLP is missing: x = x + mlp(norm3(x)).",
                _mistake(variant="no residual mlp")),
    ],
    forbidden=forbidden("Use your CrossAttention, nn.LayerNorm, nn.Linear and your attention "
                        "(or F.scaled_dot_product_attention, is_causal=True allowed)."),
    key_hints={LEAK: CAUSAL_HINT},
)
