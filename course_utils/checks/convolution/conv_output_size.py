"""The check of ``conv_output_size``: ``H' = (H + 2p − K) // s + 1`` (Dumoulin & Visin 2016),
against that formula with its ValueError where no window fits."""

from __future__ import annotations

from collections.abc import Callable

import torch

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check


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
    mistakes=[
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
    ],
)
