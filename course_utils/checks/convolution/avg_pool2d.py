"""The check of ``avg_pool2d``, against ``F.avg_pool2d``; cases and most mistakes are
``max_pool2d``'s, with the two poolings' roles swapped."""

from __future__ import annotations

import torch.nn.functional as F

from course_utils.checks.case import Mistake
from course_utils.checks.convolution._conv_ops import forbidden, pair
from course_utils.checks.convolution.max_pool2d import (
    _pool_cases,
    _pool_mistakes,
    _validate_pool,
)
from course_utils.checks.core import Check


def _reference_avg_pool2d(x, kernel_size, stride=None):
    _validate_pool(x, kernel_size, stride)
    return F.avg_pool2d(x, pair(kernel_size), None if stride is None else pair(stride))


avg_pool2d = Check(
    exercise="avg_pool2d",
    reference=_reference_avg_pool2d,
    cases=_pool_cases,
    mistakes=[
        *_pool_mistakes(F.avg_pool2d, F.max_pool2d, "max pooling", "average pooling"),
        Mistake("that is the sum of each window: divide by the number of values in it, "
                "KH·KW.", lambda x, k, stride=None: F.avg_pool2d(
                    x, pair(k), None if stride is None else pair(stride))
                * pair(k)[0] * pair(k)[1]),
    ],
    forbidden=forbidden("Cut the windows out with Tensor.unfold and take their mean."),
)
