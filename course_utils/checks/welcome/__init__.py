"""Checks of notebook 00_welcome: images as tensors.

The exercises, in notebook order, one file each:

- ``to_chw_float`` against torchvision's ``to_tensor``;
- ``rgb_to_grayscale`` against torchvision's ``rgb_to_grayscale``.

The package re-exports each check under its exercise's name, so the attribute
``welcome.to_chw_float`` is the check (it shadows the file of the same name).
"""

from __future__ import annotations

# the references, for the grader's tests (tests/test_grading_exchange.py, _recheck.py)
from course_utils.checks.welcome.rgb_to_grayscale import (
    LUMA,
    _reference_rgb_to_grayscale,  # noqa: F401
    rgb_to_grayscale,
)
from course_utils.checks.welcome.to_chw_float import (
    _reference_to_chw_float,  # noqa: F401
    to_chw_float,
)

__all__ = ["LUMA", "rgb_to_grayscale", "to_chw_float"]
