"""The check of ``conv2d_naive`` (a loop over output positions), against ``F.conv2d`` on small
cases; the reference and the mistakes are ``conv2d``'s."""

from __future__ import annotations

import torch

from course_utils.checks.case import Case
from course_utils.checks.convolution._conv_ops import forbidden, gaussian
from course_utils.checks.convolution.conv2d import (
    _WINDOW_MISTAKES,
    _conv_case,
    _reference_conv2d,
)
from course_utils.checks.core import Check


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
             {"x": gaussian(g, 3, 5, 5), "weight": gaussian(g, 2, 3, 3, 3)}, raises=ValueError),
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

conv2d_naive = Check(
    exercise="conv2d_naive",
    reference=_reference_conv2d,
    cases=_naive_cases,
    mistakes=_WINDOW_MISTAKES,
    forbidden=forbidden("Loop over the output positions and multiply-and-sum each window "
                        "with the kernel yourself."),
)
