"""The check of ``max_pool2d``, against ``F.max_pool2d``; its validation, cases and mistakes
(by the pooling they wrap) serve ``avg_pool2d`` too.

Shapes: ``x`` (B, C, H, W) -> (B, C, H', W') with ``H' = (H − KH) // stride_h + 1``; the stride
defaults to the kernel size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from course_utils.checks.case import Case, Mistake
from course_utils.checks.convolution._conv_ops import forbidden, gaussian, pair
from course_utils.checks.convolution.conv_output_size import _reference_conv_output_size
from course_utils.checks.core import Check


def _validate_pool(x, kernel_size, stride) -> None:
    if x.ndim != 4:
        raise ValueError("expected x (B, C, H, W)")
    (kh, kw), (sh, sw) = pair(kernel_size), pair(kernel_size if stride is None else stride)
    _reference_conv_output_size(x.shape[2], kh, sh)
    _reference_conv_output_size(x.shape[3], kw, sw)


def _reference_max_pool2d(x, kernel_size, stride=None):
    _validate_pool(x, kernel_size, stride)
    return F.max_pool2d(x, pair(kernel_size), None if stride is None else pair(stride))



def _pool_case(generator: torch.Generator, shape: tuple[int, ...], kernel_size, stride=None,
               dtype=torch.float32, **extra) -> Case:
    inputs = {"x": gaussian(generator, *shape, dtype=dtype), "kernel_size": kernel_size}
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
    mistakes=_pool_mistakes(F.max_pool2d, F.avg_pool2d, "average pooling", "max pooling"),
    forbidden=forbidden("Cut the windows out with Tensor.unfold and take their maximum "
                        "(amax)."),
)
