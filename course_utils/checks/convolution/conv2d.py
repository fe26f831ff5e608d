"""The check of ``conv2d`` (im2col: patches and one matmul), against ``F.conv2d``; its known
mistakes serve ``conv2d_naive`` too.

Shapes: ``x`` (B, C, H, W); ``weight`` (C_out, C, KH, KW); ``bias`` (C_out,); outputs
(B, C_out, H', W') with ``H' = (H + 2·pad_h − KH) // stride_h + 1`` (Dumoulin & Visin 2016).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from course_utils.checks.case import Case, Mistake
from course_utils.checks.convolution._conv_ops import forbidden, full_precision, gaussian, pair
from course_utils.checks.convolution.conv_output_size import _reference_conv_output_size
from course_utils.checks.core import Check


def _validate_conv(x, weight, bias, stride, padding) -> None:
    if x.ndim != 4 or weight.ndim != 4 or weight.shape[1] != x.shape[1]:
        raise ValueError("expected x (B, C, H, W) and weight (C_out, C, KH, KW)")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError("expected bias (C_out,)")
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    for size, k, s, p in ((x.shape[2], weight.shape[2], sh, ph),
                          (x.shape[3], weight.shape[3], sw, pw)):
        _reference_conv_output_size(size, k, s, p)


def _reference_conv2d(x, weight, bias=None, stride=1, padding=0):
    _validate_conv(x, weight, bias, stride, padding)
    with full_precision():
        return F.conv2d(x, weight, bias, pair(stride), pair(padding))


def _conv_case(generator: torch.Generator, name: str, batch: int, c_in: int, c_out: int,
               size: tuple[int, int], kernel: tuple[int, int], stride=None, padding=None,
               bias: bool = False, dtype=torch.float32, grad: bool = True, **extra) -> Case:
    """A case ``conv2d(x, weight[, bias], stride=..., padding=...)``; stride and padding are
    left out (the defaults) when None."""
    inputs = {"x": gaussian(generator, batch, c_in, *size, dtype=dtype),
              "weight": gaussian(generator, c_out, c_in, *kernel, dtype=dtype)}
    if bias:
        inputs["bias"] = gaussian(generator, c_out, dtype=dtype)
    described = [f"x {tuple(inputs['x'].shape)}", f"weight {tuple(inputs['weight'].shape)}",
                 "with bias" if bias else "no bias"]
    for key, value in (("stride", stride), ("padding", padding)):
        if value is not None:
            inputs[key] = value
            described.append(f"{key}={value}")
    if dtype != torch.float32:
        described.append(str(dtype).removeprefix("torch."))
    tensors = [k for k in ("x", "weight", "bias") if k in inputs]
    if dtype == torch.float32 and "raises" not in extra:
        # float32 sums of up to B·H'·W' terms (the weight's gradient) differ from F.conv2d's
        # in the last bits, by up to ~1e-4 on a batch of 32×32 images
        extra.setdefault("tolerance", (1e-4, 2e-4))
    return Case(f"{name}: {', '.join(described)}", inputs, keyword=("stride", "padding"),
                grad=tensors if grad and "raises" not in extra else (), **extra)


def _conv_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g, f64 = generator, torch.float64
    cases = [
        _conv_case(g, "one channel in and out", 1, 1, 1, (5, 5), (3, 3)),
        _conv_case(g, "several channels", 2, 3, 4, (7, 6), (3, 3), bias=True),
        _conv_case(g, "padding 1", 2, 2, 3, (6, 5), (3, 3), padding=1, bias=True),
        _conv_case(g, "stride 2 with padding", 2, 3, 2, (9, 8), (3, 3), stride=2, padding=1,
                   bias=True),
        _conv_case(g, "a non-square kernel, stride and padding as pairs", 2, 2, 3, (7, 9),
                   (2, 3), stride=(1, 2), padding=(1, 0), bias=True),
        _conv_case(g, "float64", 2, 2, 3, (6, 7), (3, 3), padding=(0, 1), bias=True, dtype=f64),
        _conv_case(g, "a 1×1 kernel", 3, 4, 2, (4, 3), (1, 1), bias=True),
        Case("x with 3 channels but weight (2, 2, 3, 3) for 2, which it must refuse",
             {"x": gaussian(g, 2, 3, 5, 5), "weight": gaussian(g, 2, 2, 3, 3)}, raises=ValueError),
        Case("x of shape (3, 5, 5), not (B, C, H, W), which it must refuse",
             {"x": gaussian(g, 3, 5, 5), "weight": gaussian(g, 2, 3, 3, 3)}, raises=ValueError),
    ]
    if hidden:
        cases += [
            _conv_case(g, "odd everything", 3, 5, 6, (17, 13), (5, 3), stride=(2, 3),
                       padding=(2, 1), bias=True),
            _conv_case(g, "a kernel as large as the image", 2, 3, 4, (5, 6), (5, 6),
                       bias=True),
            _conv_case(g, "padding larger than the kernel", 1, 2, 2, (4, 4), (3, 3),
                       padding=3, bias=True),
            _conv_case(g, "float64, strides and a tall kernel", 2, 3, 2, (11, 8), (4, 2),
                       stride=(3, 1), padding=(0, 2), dtype=f64),
            _conv_case(g, "a Shapes-world batch", 4, 3, 8, (32, 32), (3, 3), padding=1,
                       bias=True),
            _conv_case(g, "a wide image, stride 2", 1, 1, 3, (3, 20), (3, 3), stride=2,
                       bias=True),
            Case("weight (3, 2, 3, 3) but a bias of length 2, which it must refuse",
                 {"x": gaussian(g, 1, 2, 5, 5), "weight": gaussian(g, 3, 2, 3, 3),
                  "bias": gaussian(g, 2)}, raises=ValueError),
            _conv_case(g, "a kernel larger than the image, which it must refuse", 1, 2, 2,
                       (3, 3), (5, 5), raises=ValueError),
        ]
    return cases


def _conv_mistake(change: Callable) -> Callable:
    """A wrong conv2d: ``change(x, weight, bias, (sh, sw), (ph, pw))`` with pairs unpacked."""

    def implementation(x, weight, bias=None, stride=1, padding=0):
        with full_precision():
            return change(x, weight, bias, pair(stride), pair(padding))

    return implementation


def _im2col(x, weight, stride, padding):
    """Patches (B, C, H', W', KH, KW) of the zero-padded x, via Tensor.unfold."""
    (sh, sw), (ph, pw) = stride, padding
    padded = F.pad(x, (pw, pw, ph, ph))
    return padded.unfold(2, weight.shape[2], sh).unfold(3, weight.shape[3], sw)


def _unpermuted_patches(x, weight, bias, stride, padding):
    patches = _im2col(x, weight, stride, padding)  # (B, C, H', W', KH, KW)
    batch, _, height, width = patches.shape[:4]
    columns = patches.reshape(batch, -1, height * width)  # wrong: mixes (H', W') and (KH, KW)
    out = weight.reshape(weight.shape[0], -1) @ columns  # (B, C_out, H'·W')
    out = out.reshape(batch, -1, height, width)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def _unpermuted_output(x, weight, bias, stride, padding):
    patches = _im2col(x, weight, stride, padding)  # (B, C, H', W', KH, KW)
    batch, _, height, width = patches.shape[:4]
    rows = patches.permute(0, 2, 3, 1, 4, 5).reshape(batch, height * width, -1)  # (B, L, CKK)
    out = rows @ weight.reshape(weight.shape[0], -1).T  # (B, L, C_out)
    if bias is not None:
        out = out + bias
    return out.reshape(batch, -1, height, width)  # wrong: (B, L, C_out) read as (B, C_out, L)


_FLIPPED = Mistake(
    "the kernel is flipped: deep learning's convolution is a cross-correlation, "
    "y[i, j] = Σ w[k, l]·x[i + k, j + l] with no flip (the textbook convolution flips it: "
    "x[i − k, j − l]).",
    _conv_mistake(lambda x, w, b, s, p: F.conv2d(x, w.flip(-2, -1), b, s, p)))
_ONE_SIDE = "the padding is on one side only: pad every side, top and bottom with pad_h " \
            "zeros, left and right with pad_w (F.pad(x, (pad_w, pad_w, pad_h, pad_h)))."
_ONE_SIDED = [
    Mistake(_ONE_SIDE, _conv_mistake(lambda x, w, b, s, p: F.conv2d(
        F.pad(x, (0, 2 * p[1], 0, 2 * p[0])), w, b, s))),
    Mistake(_ONE_SIDE, _conv_mistake(lambda x, w, b, s, p: F.conv2d(
        F.pad(x, (2 * p[1], 0, 2 * p[0], 0)), w, b, s))),
    Mistake(_ONE_SIDE, _conv_mistake(lambda x, w, b, s, p: F.conv2d(
        F.pad(x, (0, p[1], 0, p[0])), w, b, s))),
    Mistake(_ONE_SIDE, _conv_mistake(lambda x, w, b, s, p: F.conv2d(
        F.pad(x, (p[1], 0, p[0], 0)), w, b, s))),
    Mistake("only the width is padded: F.pad's tuple starts from the last dimension, "
            "(left, right, top, bottom), so (p, p) pads the width alone.",
            _conv_mistake(lambda x, w, b, s, p: F.conv2d(F.pad(x, (p[1], p[1])), w, b, s))),
]
_NO_BIAS = Mistake(
    "the bias is missing: add bias[o] to every value of output channel o "
    "(bias.view(1, -1, 1, 1) broadcasts it).",
    _conv_mistake(lambda x, w, b, s, p: F.conv2d(x, w, None, s, p)))
_BIAS_BROADCAST = Mistake(
    "the bias is added along the wrong axis: `out + bias` lines bias (C_out,) up with the "
    "last axis of out (B, C_out, H', W'), the width. Add it per output channel: "
    "out + bias.view(1, -1, 1, 1).",
    _conv_mistake(lambda x, w, b, s, p: F.conv2d(x, w, None, s, p) + (0 if b is None else b)))
_NO_STRIDE = Mistake(
    "the stride is ignored: output (i, j) reads the window at row stride_h·i, column "
    "stride_w·j, and there are only conv_output_size(...) of them.",
    _conv_mistake(lambda x, w, b, s, p: F.conv2d(x, w, b, 1, p)))
_OFF_BY_ONE = Mistake(
    "the output is one row and one column short: there are (H + 2p − K) // s + 1 window "
    "positions (range(H − K) misses the last one; use conv_output_size).",
    _conv_mistake(lambda x, w, b, s, p: F.conv2d(x, w, b, s, p)[..., :-1, :-1]))
_SWAPPED = Mistake(
    "a pair is read in the wrong order: stride and padding pairs are (height, width), like "
    "the kernel's (KH, KW).",
    _conv_mistake(lambda x, w, b, s, p: F.conv2d(x, w, b, s[::-1], p[::-1])))
_MIXED = "a reshape mixed the channel and kernel-position order: flatten each patch in the " \
         "same (C, KH, KW) order as weight.reshape(C_out, -1), i.e. permute the patches so " \
         "that C, KH, KW are adjacent and in that order before the reshape."
_MIXED_ORDER = [
    Mistake(_MIXED, _conv_mistake(lambda x, w, b, s, p: F.conv2d(
        x, w.reshape(w.shape[0], w.shape[2], w.shape[3], w.shape[1]).permute(0, 3, 1, 2),
        b, s, p))),
    Mistake(_MIXED, _conv_mistake(lambda x, w, b, s, p: F.conv2d(
        x, w.permute(0, 2, 3, 1).reshape(w.shape), b, s, p))),
    Mistake("the patches were reshaped without a permute: x.unfold(2, …).unfold(3, …) is "
            "(B, C, H', W', KH, KW); move C, KH, KW together (permute) before flattening "
            "them into one axis.", _conv_mistake(_unpermuted_patches)),
    Mistake("the output was reshaped from (B, H'·W', C_out) to (B, C_out, H', W') without "
            "moving the channel axis first: transpose(1, 2) (or permute) before the reshape.",
            _conv_mistake(_unpermuted_output)),
]

#: The mistakes of any convolution, a loop's as much as im2col's (``conv2d_naive`` has them too).
_WINDOW_MISTAKES = [_FLIPPED, *_ONE_SIDED, _NO_BIAS, _BIAS_BROADCAST, _NO_STRIDE, _OFF_BY_ONE,
                    _SWAPPED]

conv2d = Check(
    exercise="conv2d",
    reference=_reference_conv2d,
    cases=_conv_cases,
    mistakes=[*_WINDOW_MISTAKES, *_MIXED_ORDER],
    forbidden=forbidden("Build the patches with Tensor.unfold (or as_strided) and combine "
                        "them with the weights in one matmul or einsum."),
)
