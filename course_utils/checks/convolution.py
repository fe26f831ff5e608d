"""Checks of notebook 01_convolution_pooling: convolution and pooling from scratch.

References: ``torch.nn.functional.conv2d``, ``max_pool2d`` and ``avg_pool2d``; a Sobel filter
built from ``F.conv2d``; and, for the trained ``SmallCNN``, its accuracy on Shapes-world images
the check renders itself. While the student's code runs, every convolution and pooling op of
torch is refused, and so are ``F.unfold`` / ``F.fold`` (the im2col a student is asked to write);
``Tensor.unfold``, ``as_strided``, ``einsum`` and ``matmul`` stay allowed.

Shapes: ``x`` (B, C, H, W); ``weight`` (C_out, C, KH, KW); ``bias`` (C_out,); outputs
(B, C_out, H', W') with ``H' = (H + 2·pad_h − KH) // stride_h + 1`` (Dumoulin & Visin 2016).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.checks.case import TOLERANCES, Case, Mistake, Outputs
from course_utils.checks.core import Check, QualityCheck
from course_utils.checks.forbid import Forbidden
from course_utils.data import CLASSES, ShapesClassification

# --- what the student's code may not call ---------------------------------------------------

#: torch's Python entry points to convolution, im2col and pooling (for a message naming them).
#: ``torch.conv2d`` is the same object as ``F.conv2d``: ``F`` is listed first, so the message
#: names it (the first name of an alias wins).
FORBIDDEN_FUNCTIONS = (
    "torch.nn.functional.conv1d", "torch.nn.functional.conv2d", "torch.nn.functional.conv3d",
    "torch.nn.functional.conv_transpose1d", "torch.nn.functional.conv_transpose2d",
    "torch.nn.functional.conv_transpose3d",
    "torch.nn.functional.unfold", "torch.nn.functional.fold",
    "torch.nn.functional.max_pool1d", "torch.nn.functional.max_pool2d",
    "torch.nn.functional.max_pool3d", "torch.nn.functional.max_pool2d_with_indices",
    "torch.nn.functional.avg_pool1d", "torch.nn.functional.avg_pool2d",
    "torch.nn.functional.avg_pool3d", "torch.nn.functional.lp_pool2d",
    "torch.nn.functional.adaptive_max_pool2d", "torch.nn.functional.adaptive_avg_pool2d",
    "torch.nn.functional.fractional_max_pool2d",
    "torch.conv1d", "torch.conv2d", "torch.conv3d", "torch.convolution",
    "torch.conv_transpose1d", "torch.conv_transpose2d", "torch.conv_transpose3d",
    "torch.max_pool1d", "torch.max_pool2d", "torch.max_pool3d", "torch.avg_pool1d",
    "torch.adaptive_avg_pool1d", "torch.adaptive_max_pool1d",
)

#: The kernels under them, as a TorchDispatchMode sees them (checked on torch 2.14: F.conv2d,
#: nn.Conv2d, conv1d and conv_transpose2d all reach ``convolution``; F.unfold ``im2col``,
#: F.fold ``col2im``; max pooling ``max_pool2d_with_indices``, average pooling ``avg_pool2d``),
#: plus the backend kernels a student could call through ``torch.ops.aten``.
FORBIDDEN_ATEN = (
    "convolution", "_convolution", "_convolution_mode", "convolution_overrideable",
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "mkldnn_convolution", "cudnn_convolution", "cudnn_convolution_transpose",
    "miopen_convolution", "_nnpack_spatial_convolution", "_slow_conv2d_forward",
    "thnn_conv2d", "slow_conv_dilated2d", "slow_conv_transpose2d", "_conv_depthwise2d",
    "slow_conv3d", "slow_conv3d_forward",
    "im2col", "col2im",
    "max_pool1d", "max_pool1d_with_indices", "max_pool2d", "max_pool2d_with_indices",
    "max_pool3d", "max_pool3d_with_indices", "mkldnn_max_pool2d", "quantized_max_pool2d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "_adaptive_avg_pool2d",
    "mkldnn_adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "fractional_max_pool2d",
)


def forbidden(allowed: str) -> Forbidden:
    """torch's convolution, im2col and pooling, refused at the Python and the kernel level."""
    return Forbidden(functions=FORBIDDEN_FUNCTIONS, aten=FORBIDDEN_ATEN, allowed=allowed)


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``(2, 1)`` -> ``(2, 1)``: (height, width) as torch reads them."""
    if isinstance(value, int):
        return (value, value)
    height, width = value
    return (int(height), int(width))


def _tensor(generator: torch.Generator, *shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """cuDNN convolutions in true float32 (it defaults to TF32 on recent GPUs, with errors of
    about 1e-3): the references must be as exact as the student's float32 matmul."""
    cudnn = torch.backends.cudnn
    with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                     deterministic=cudnn.deterministic, allow_tf32=False):
        yield


class _NotThisMistake(Exception):
    """Raised by a mistake on a case where it gives the right answer (see ``_unless_right``)."""


def _same(a, b) -> bool:
    if torch.is_tensor(a) and torch.is_tensor(b):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        rtol, atol = TOLERANCES.get(b.dtype, TOLERANCES[torch.float32])
        return bool(torch.allclose(a.detach(), b.detach(), rtol=rtol, atol=atol))
    return type(a) is type(b) and a == b


def _unless_right(wrong: Callable, right: Callable) -> Callable:
    """``wrong``, except that it raises on a case where it agrees with ``right`` (ignoring the
    stride when the stride is 1). ``Check.hint`` then skips it there, instead of naming a
    mistake the student did not make when their failure lies elsewhere (in a gradient)."""

    def implementation(*args, **kwargs):
        out = wrong(*args, **kwargs)
        try:
            with torch.no_grad():
                expected = right(*args, **kwargs)
        except Exception:
            return out
        if _same(out, expected):
            raise _NotThisMistake()
        return out

    return implementation


def _mistakes(right: Callable, *mistakes: Mistake) -> list[Mistake]:
    """The mistakes, each silenced on the cases where it happens to be right."""
    return [Mistake(m.hint, _unless_right(m.implementation, right)) for m in mistakes]


# --- conv_output_size: H' = (H + 2p − K) // s + 1 ---------------------------------------------


def _reference_conv_output_size(size: int, kernel_size: int, stride: int = 1,
                                padding: int = 0) -> int:
    if kernel_size < 1 or stride < 1 or padding < 0 or kernel_size > size + 2 * padding:
        raise ValueError("no window fits")
    return (size + 2 * padding - kernel_size) // stride + 1


#: (size, kernel_size, stride, padding): what conv layers of real networks use, and odd ones.
#: The order matters for the hints: each mistake first shows on a case that tells it apart.
_SIZES = [(5, 3, 1, 0), (28, 5, 1, 2), (32, 3, 1, 1), (7, 3, 2, 1), (32, 2, 2, 0), (6, 6, 1, 0),
          (10, 4, 3, 0), (1, 1, 1, 0), (224, 7, 2, 3), (9, 3, 3, 2)]
_HIDDEN_SIZES = [(224, 11, 4, 2), (13, 3, 2, 0), (12, 5, 2, 2), (3, 5, 1, 1), (100, 1, 7, 0),
                 (17, 8, 5, 3), (2, 3, 1, 1), (57, 3, 2, 1), (8, 2, 4, 0), (15, 15, 3, 0)]


def _size_case(size: int, kernel_size: int, stride: int, padding: int, **extra) -> Case:
    return Case(f"size={size}, kernel_size={kernel_size}, stride={stride}, padding={padding}",
                {"size": size, "kernel_size": kernel_size, "stride": stride,
                 "padding": padding}, **extra)


def _conv_output_size_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    cases = [_size_case(*args) for args in (_SIZES + (_HIDDEN_SIZES if hidden else []))]
    cases.append(Case("size=5, kernel_size=3 and the defaults stride=1, padding=0",
                      {"size": 5, "kernel_size": 3}))
    cases.append(_size_case(3, 5, 1, 0, raises=ValueError))
    if hidden:
        cases.append(_size_case(4, 7, 2, 1, raises=ValueError))
        cases.append(_size_case(8, 3, 0, 1, raises=ValueError))
    for case in cases:
        if case.raises:
            case.name += ": no window fits (or stride < 1), which it must refuse"
    return cases


def _size_mistake(formula: Callable[[int, int, int, int], int | float]) -> Callable:
    def implementation(size, kernel_size, stride=1, padding=0):
        return formula(size, kernel_size, stride, padding)

    return implementation


conv_output_size = Check(
    exercise="conv_output_size",
    reference=_reference_conv_output_size,
    cases=_conv_output_size_cases,
    mistakes=_mistakes(
        _reference_conv_output_size,
        Mistake("one short: the window fits at positions 0, s, 2s, …, so there are "
                "(H + 2p − K) // s + 1 of them; the + 1 counts the first one.",
                _size_mistake(lambda n, k, s, p: (n + 2 * p - k) // s)),
        Mistake("padding adds p pixels on *both* sides: H + 2p, not H + p.",
                _size_mistake(lambda n, k, s, p: (n + p - k) // s + 1)),
        Mistake("the stride is ignored: divide the free room H + 2p − K by the stride.",
                _size_mistake(lambda n, k, s, p: n + 2 * p - k + 1)),
        Mistake("a size is a whole number: use floor division // (a window that does not fit "
                "entirely is dropped).",
                _size_mistake(lambda n, k, s, p: (n + 2 * p - k) / s + 1)),
        Mistake("rounded up: a last window that would stick out of the padded image is "
                "dropped, so round down with //.",
                _size_mistake(lambda n, k, s, p: -(-(n + 2 * p - k) // s) + 1)),
    ),
)


# --- conv2d and conv2d_naive: reference F.conv2d --------------------------------------------


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
    inputs = {"x": _tensor(generator, batch, c_in, *size, dtype=dtype),
              "weight": _tensor(generator, c_out, c_in, *kernel, dtype=dtype)}
    if bias:
        inputs["bias"] = _tensor(generator, c_out, dtype=dtype)
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
             {"x": _tensor(g, 2, 3, 5, 5), "weight": _tensor(g, 2, 2, 3, 3)}, raises=ValueError),
        Case("x of shape (3, 5, 5), not (B, C, H, W), which it must refuse",
             {"x": _tensor(g, 3, 5, 5), "weight": _tensor(g, 2, 3, 3, 3)}, raises=ValueError),
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
                 {"x": _tensor(g, 1, 2, 5, 5), "weight": _tensor(g, 3, 2, 3, 3),
                  "bias": _tensor(g, 2)}, raises=ValueError),
            _conv_case(g, "a kernel larger than the image, which it must refuse", 1, 2, 2,
                       (3, 3), (5, 5), raises=ValueError),
        ]
    return cases


def _naive_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    """Small cases (a loop version computes every output value one by one)."""
    g, f64 = generator, torch.float64
    cases = [
        _conv_case(g, "one channel in and out", 1, 1, 1, (4, 4), (3, 3)),
        _conv_case(g, "several channels", 2, 2, 3, (5, 4), (3, 2), bias=True),
        _conv_case(g, "stride 2 with padding 1", 1, 2, 2, (5, 5), (3, 3), stride=2, padding=1,
                   bias=True),
        _conv_case(g, "stride and padding as pairs", 1, 1, 2, (4, 6), (2, 3), stride=(1, 2),
                   padding=(1, 0), bias=True),
        _conv_case(g, "float64", 2, 1, 2, (4, 5), (3, 3), padding=1, bias=True, dtype=f64),
        Case("x of shape (3, 5, 5), not (B, C, H, W), which it must refuse",
             {"x": _tensor(g, 3, 5, 5), "weight": _tensor(g, 2, 3, 3, 3)}, raises=ValueError),
    ]
    if hidden:
        cases += [
            _conv_case(g, "odd sizes", 2, 3, 2, (7, 5), (3, 2), stride=(2, 1), padding=(1, 2),
                       bias=True),
            _conv_case(g, "a kernel as large as the image", 1, 2, 2, (3, 4), (3, 4),
                       bias=True),
            _conv_case(g, "float64, stride 3", 1, 2, 1, (7, 7), (2, 2), stride=3, padding=1,
                       dtype=f64),
            _conv_case(g, "a kernel larger than the image, which it must refuse", 1, 1, 1,
                       (2, 2), (3, 3), raises=ValueError),
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

conv2d = Check(
    exercise="conv2d",
    reference=_reference_conv2d,
    cases=_conv_cases,
    mistakes=_mistakes(_reference_conv2d, _FLIPPED, *_ONE_SIDED, _NO_BIAS, _BIAS_BROADCAST,
                       _NO_STRIDE, _OFF_BY_ONE, _SWAPPED, *_MIXED_ORDER),
    forbidden=forbidden("Build the patches with Tensor.unfold (or as_strided) and combine "
                        "them with the weights in one matmul or einsum."),
)

conv2d_naive = Check(
    exercise="conv2d_naive",
    reference=_reference_conv2d,
    cases=_naive_cases,
    mistakes=_mistakes(_reference_conv2d, _FLIPPED, *_ONE_SIDED, _NO_BIAS, _BIAS_BROADCAST,
                       _NO_STRIDE, _OFF_BY_ONE, _SWAPPED),
    forbidden=forbidden("Loop over the output positions and multiply-and-sum each window "
                        "with the kernel yourself."),
)


# --- max_pool2d and avg_pool2d: references F.max_pool2d, F.avg_pool2d -------------------------


def _validate_pool(x, kernel_size, stride) -> None:
    if x.ndim != 4:
        raise ValueError("expected x (B, C, H, W)")
    (kh, kw), (sh, sw) = pair(kernel_size), pair(kernel_size if stride is None else stride)
    _reference_conv_output_size(x.shape[2], kh, sh)
    _reference_conv_output_size(x.shape[3], kw, sw)


def _reference_max_pool2d(x, kernel_size, stride=None):
    _validate_pool(x, kernel_size, stride)
    return F.max_pool2d(x, pair(kernel_size), None if stride is None else pair(stride))


def _reference_avg_pool2d(x, kernel_size, stride=None):
    _validate_pool(x, kernel_size, stride)
    return F.avg_pool2d(x, pair(kernel_size), None if stride is None else pair(stride))


def _pool_case(generator: torch.Generator, shape: tuple[int, ...], kernel_size, stride=None,
               dtype=torch.float32, **extra) -> Case:
    inputs = {"x": _tensor(generator, *shape, dtype=dtype), "kernel_size": kernel_size}
    name = f"x {shape}, kernel_size={kernel_size}"
    if stride is not None:
        inputs["stride"] = stride
        name += f", stride={stride}"
    else:
        name += " and the default stride"
    if dtype != torch.float32:
        name += f", {str(dtype).removeprefix('torch.')}"
    if extra.get("raises"):
        name += ", which it must refuse"
    return Case(name, inputs, keyword=("stride",), grad=() if extra.get("raises") else ("x",),
                **extra)


def _pool_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator
    cases = [
        _pool_case(g, (1, 1, 4, 4), 2),
        _pool_case(g, (2, 3, 6, 5), 2),  # 5 is not a multiple of 2: the last column is dropped
        _pool_case(g, (2, 2, 7, 7), 3, stride=2),  # overlapping windows
        _pool_case(g, (1, 2, 6, 9), (2, 3)),
        _pool_case(g, (2, 1, 5, 6), 2, stride=1, dtype=torch.float64),
        _pool_case(g, (2, 3, 8, 5), (3, 2), stride=(2, 1)),
        _pool_case(g, (3, 4, 4), 2, raises=ValueError),
    ]
    if hidden:
        cases += [
            _pool_case(g, (4, 8, 32, 32), 2),
            _pool_case(g, (2, 3, 9, 13), (3, 4), stride=(3, 2), dtype=torch.float64),
            _pool_case(g, (1, 2, 5, 7), (5, 7)),  # the whole image
            _pool_case(g, (2, 2, 3, 4), 1),
            _pool_case(g, (1, 1, 11, 6), 4, stride=3),
            _pool_case(g, (1, 2, 3, 3), 4, raises=ValueError),
        ]
    return cases


def _pool_mistake(pool: Callable, change_kernel: Callable = lambda k: k,
                  change_stride: Callable = lambda s: s, **options) -> Callable:
    """A wrong pooling: ``pool`` with the (pairs of) kernel size and stride changed."""

    def implementation(x, kernel_size, stride=None):
        stride = None if stride is None else pair(stride)
        return pool(x, change_kernel(pair(kernel_size)), change_stride(stride), **options)

    return implementation


def _pool_mistakes(pool: Callable, other: Callable, other_name: str, name: str) -> list[Mistake]:
    return [
        Mistake("stride=None means stride = kernel_size (windows side by side, no overlap), "
                "not stride 1.",
                _pool_mistake(pool, change_stride=lambda s: 1 if s is None else s)),
        Mistake(f"that is {other_name}, not {name}.", _pool_mistake(other)),
        Mistake("kernel_size (and stride) pairs are (height, width): the window is KH rows "
                "tall and KW columns wide.",
                _pool_mistake(pool, change_kernel=lambda k: k[::-1],
                              change_stride=lambda s: None if s is None else s[::-1])),
        Mistake("a last, partial window was kept: like a convolution, pooling has "
                "(H − K) // s + 1 windows (a window that does not fit is dropped).",
                _pool_mistake(pool, ceil_mode=True)),
        Mistake("the output is one row and one column short: there are (H − K) // s + 1 "
                "windows.", lambda x, k, stride=None: pool(
                    x, pair(k), None if stride is None else pair(stride))[..., :-1, :-1]),
    ]


max_pool2d = Check(
    exercise="max_pool2d",
    reference=_reference_max_pool2d,
    cases=_pool_cases,
    mistakes=_mistakes(_reference_max_pool2d, *_pool_mistakes(
        F.max_pool2d, F.avg_pool2d, "average pooling", "max pooling")),
    forbidden=forbidden("Cut the windows out with Tensor.unfold and take their maximum "
                        "(amax)."),
)

avg_pool2d = Check(
    exercise="avg_pool2d",
    reference=_reference_avg_pool2d,
    cases=_pool_cases,
    mistakes=_mistakes(
        _reference_avg_pool2d,
        *_pool_mistakes(F.avg_pool2d, F.max_pool2d, "max pooling", "average pooling"),
        Mistake("that is the sum of each window: divide by the number of values in it, "
                "KH·KW.", lambda x, k, stride=None: F.avg_pool2d(
                    x, pair(k), None if stride is None else pair(stride))
                * pair(k)[0] * pair(k)[1]),
    ),
    forbidden=forbidden("Cut the windows out with Tensor.unfold and take their mean."),
)


# --- sobel_edges: gradient magnitude with replicate padding -----------------------------------

#: Sobel & Feldman (1968): the horizontal derivative, smoothed vertically by (1, 2, 1).
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def _sobel(gray: torch.Tensor, kernel_x=SOBEL_X, pad: str | None = "replicate",
           combine: str = "l2", which: str = "xy") -> torch.Tensor:
    """The Sobel filter and its common variants (the reference uses the defaults)."""
    kx = torch.tensor(kernel_x, dtype=gray.dtype, device=gray.device)  # (3, 3)
    weight = torch.stack([kx, kx.T])[:, None]  # (2, 1, 3, 3): d/dx, d/dy
    if pad is not None:
        gray = F.pad(gray, (1, 1, 1, 1), mode=pad)  # (B, 1, H + 2, W + 2)
    with full_precision():
        gradients = F.conv2d(gray, weight)  # (B, 2, H, W)
    gradients = gradients[:, {"xy": [0, 1], "x": [0], "y": [1]}[which]]
    if combine == "l1":
        return gradients.abs().sum(dim=1, keepdim=True)
    squared = (gradients ** 2).sum(dim=1, keepdim=True)  # (B, 1, H, W)
    return squared if combine == "squared" else squared.sqrt()


def _reference_sobel_edges(gray):
    if gray.ndim != 4 or gray.shape[1] != 1:
        raise ValueError("expected gray (B, 1, H, W)")
    return _sobel(gray)


def _sobel_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator
    step = torch.zeros(1, 1, 6, 7)
    step[..., 3:] = 1.0  # a vertical edge between columns 2 and 3
    cases = [
        Case("random (1, 1, 6, 7)", {"gray": _tensor(g, 1, 1, 6, 7)}, grad=["gray"]),
        Case("random (2, 1, 5, 5), float64",
             {"gray": _tensor(g, 2, 1, 5, 5, dtype=torch.float64)}, grad=["gray"]),
        Case("a vertical edge: columns 0–2 black, 3–6 white, (1, 1, 6, 7)",
             {"gray": step}),
        Case("an RGB image (1, 3, 5, 5), which it must refuse", {"gray": _tensor(g, 1, 3, 5, 5)},
             raises=ValueError),
    ]
    if hidden:
        square = torch.zeros(2, 1, 9, 8)
        square[:, :, 2:6, 3:7] = 1.0
        cases += [
            Case("random (3, 1, 16, 9)", {"gray": _tensor(g, 3, 1, 16, 9)}, grad=["gray"]),
            Case("a bright square on black (2, 1, 9, 8)", {"gray": square}),
            Case("a horizontal ramp (1, 1, 4, 6), float64",
                 {"gray": torch.arange(6, dtype=torch.float64).expand(1, 1, 4, 6).clone()}),
            Case("random (1, 1, 32, 32)", {"gray": _tensor(g, 1, 1, 32, 32).sigmoid()},
                 grad=["gray"]),
            Case("a (B, H, W) tensor without the channel axis, which it must refuse",
                 {"gray": _tensor(g, 2, 5, 5)}, raises=ValueError),
        ]
    return cases


sobel_edges = Check(
    exercise="sobel_edges",
    reference=_reference_sobel_edges,
    cases=_sobel_cases,
    mistakes=_mistakes(
        _reference_sobel_edges,
        Mistake("the border is zero-padded, so the image's edge shows up as an edge: pad by "
                "replicating the border pixels, F.pad(gray, (1, 1, 1, 1), mode='replicate'), "
                "then convolve without padding.", lambda g: _sobel(g, pad="constant")),
        Mistake("replicate the border pixels (mode='replicate'), do not mirror them "
                "(mode='reflect').", lambda g: _sobel(g, pad="reflect")),
        Mistake("the output is smaller than the image: pad by one pixel on every side "
                "first, so that the edge map is (B, 1, H, W).", lambda g: _sobel(g, pad=None)),
        Mistake("that is the squared magnitude: take the square root, √(Gx² + Gy²).",
                lambda g: _sobel(g, combine="squared")),
        Mistake("that is |Gx| + |Gy|; the gradient magnitude is √(Gx² + Gy²).",
                lambda g: _sobel(g, combine="l1")),
        Mistake("only the horizontal derivative Gx is there: add the vertical one, Gy, whose "
                "kernel is Gx's transposed.", lambda g: _sobel(g, which="x")),
        Mistake("only the vertical derivative Gy is there: add the horizontal one, Gx.",
                lambda g: _sobel(g, which="y")),
        Mistake("that is the Prewitt kernel (rows 1, 1, 1): Sobel weighs the middle row "
                "twice, (1, 2, 1).",
                lambda g: _sobel(g, kernel_x=((-1.0, 0.0, 1.0),) * 3)),
        Mistake("the kernels are divided by 8; use Sobel's integers, (−1, 0, 1), (−2, 0, 2), "
                "(−1, 0, 1).", lambda g: _sobel(g) / 8),
    ),
    forbidden=forbidden("Use your conv2d from exercise 3 (and F.pad for the border)."),
)


# --- SmallCNN: held-out accuracy on images the check renders --------------------------------

#: The graded figure and its threshold (COURSE_SPEC §7).
CNN_ACCURACY = "SmallCNN held-out accuracy"
CNN_THRESHOLD = 0.95


def _cnn_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    """New test-split images of all 15 classes, rendered from a seed of the check's own."""
    seed = int(torch.randint(1000, 2**31 - 1, (1,), generator=generator))
    size = 1500 if hidden else 600
    test = ShapesClassification("test", size=size, seed=seed, hold_out=False)
    return [Case(f"{size} new single-object Shapes-world images, 15 classes (seed {seed})",
                 {"images": test.images}, private={"labels": test.labels})]


def _cnn_run(model, case: Case) -> Outputs:
    """The model's logits on the case's images, in batches of 500, on the model's device."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected the trained model (an nn.Module), got {type(model).__name__}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    model.eval()  # BatchNorm and Dropout in inference mode
    images = case.inputs["images"]
    logits = []
    for start in range(0, len(images), 500):
        out = model(images[start:start + 500].to(device))
        if type(out) is not torch.Tensor:
            raise TypeError(f"the model returned {type(out).__name__}, expected logits "
                            "(B, 15)")
        logits.append(out.detach().float().cpu())
    return {"output": torch.cat(logits)}


def _cnn_score(case: Case, outputs: Outputs) -> dict[str, float]:
    logits, labels = outputs["output"], case.private["labels"]
    expected = (len(labels), len(CLASSES))
    if type(logits) is not torch.Tensor or tuple(logits.shape) != expected:
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise ValueError(f"expected logits of shape {expected}, got {shape}")
    correct = logits.argmax(dim=1).cpu() == labels
    return {CNN_ACCURACY: correct.float().mean().item()}


small_cnn = QualityCheck(
    exercise="SmallCNN",
    cases=_cnn_cases,
    run=_cnn_run,
    score=_cnn_score,
    thresholds={CNN_ACCURACY: CNN_THRESHOLD},
    hint="check that forward returns one logit per class (B, 15) without a softmax (the "
         "cross-entropy applies it), that every block has its BatchNorm, and train again "
         "(run the training cell once, from a freshly built model).",
)
