"""Step 4 of a check: how an implementation's outputs differ from the reference's.

``first_difference(actual, expected)`` names the first problem in one or two lines a student
can act on ("the output has shape (2, 3), expected (2, 4)"), or returns None when they agree
within the dtype's tolerance (``TOLERANCES``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from course_utils.checks.case import TOLERANCES, Outputs


def describe(value: Any) -> str:
    if torch.is_tensor(value):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}, dtype {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"a NumPy array of shape {value.shape}, dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:120]


def difference(key: str, actual: Any, expected: Any,
               tolerance: tuple[float, float] | None = None) -> str | None:
    """Why ``actual`` is not ``expected`` (None when it is), in one or two lines."""
    what = "the output" if key == "output" else key
    if key.startswith("grad["):
        if expected is None:
            return None
        if actual is None:
            name = key[5:-1]
            return (f"no gradient reached `{name}`: the output is cut off from autograd "
                    "(.detach(), .item(), .numpy() or torch.tensor(...) on a tensor that "
                    "needs gradients)")
    if key == "raised":
        if actual == expected:
            return None
        return f"expected it to raise {expected} (with a message saying what is wrong), " \
               f"but it {'raised ' + actual if actual else 'returned normally'}"
    if torch.is_tensor(expected):
        return (tensor_structure_difference(what, actual, expected)
                or value_difference(what, actual.detach(), expected.detach(), tolerance))
    if isinstance(expected, bool) or expected is None:
        return None if actual is expected else f"{what} is {actual!r}, expected {expected!r}"
    if isinstance(expected, int | float):
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            return f"{what} should be a Python {type(expected).__name__}, got {describe(actual)}"
        if isinstance(expected, int) and not isinstance(actual, int):
            return f"{what} should be an int, got {describe(actual)}"
        rtol, atol = tolerance or TOLERANCES[torch.float64]
        ok = math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol)
        return None if ok else f"{what} is {actual!r}, expected {expected!r}"
    return None if actual == expected else f"{what} is {describe(actual)}, expected {expected!r}"


def tensor_structure_difference(what: str, actual: Any, expected: torch.Tensor) -> str | None:
    """Why ``actual`` cannot stand for the tensor ``expected`` (not a tensor, or another shape,
    dtype or device), None when it can; the values are not compared."""
    if type(actual) is not torch.Tensor:
        return f"{what} should be a torch.Tensor, got {describe(actual)}"
    if actual.shape != expected.shape:
        return f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if actual.dtype != expected.dtype:
        return f"{what} has dtype {actual.dtype}, expected {expected.dtype}"
    if actual.device != expected.device:
        return f"{what} is on {actual.device}, expected {expected.device} (the input's device)"
    return None


def value_difference(what: str, actual: torch.Tensor, expected: torch.Tensor,
                     tolerance: tuple[float, float] | None = None) -> str | None:
    if not actual.is_floating_point():
        wrong = actual != expected
        if not wrong.any():
            return None
        index = tuple(int(i) for i in wrong.nonzero()[0])
        return (f"{what} differs at {int(wrong.sum())} of {wrong.numel()} positions; "
                f"first at {list(index)}: expected {expected[index].item()}, "
                f"got {actual[index].item()}")
    rtol, atol = tolerance or TOLERANCES.get(expected.dtype, TOLERANCES[torch.float32])
    finite = torch.isfinite(expected)
    if (torch.isnan(actual) & ~torch.isnan(expected)).any():
        return f"{what} contains NaN where the expected values are finite"
    if torch.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True):
        return None
    error = (actual - expected).abs().to(torch.float64).nan_to_num(math.inf)
    error = torch.where(finite, error, (actual != expected).to(torch.float64) * math.inf)
    index = tuple(int(i) for i in np.unravel_index(int(error.argmax()), tuple(error.shape)))
    at = f" at {list(index)}" if index else ""
    return (f"{what} has the right shape but wrong values: the largest error is "
            f"{error.max().item():.3g}{at} (expected {expected[index].item():.6g}, "
            f"got {actual[index].item():.6g}; tolerance rtol={rtol:g}, atol={atol:g})")


def first_difference(actual: Outputs, expected: Outputs,
                     tolerance: tuple[float, float] | None = None) -> str | None:
    """The first problem found comparing ``actual`` with ``expected`` (None if they agree)."""
    forward = [k for k in expected if not k.startswith("grad[")]
    backward = [k for k in expected if k.startswith("grad[")]
    if forward == ["output"] and "output" not in actual:
        n = len([k for k in actual if not k.startswith("grad[")])
        return f"it returned a tuple or list of {n} values; expected a single value"
    if "output" in actual and "output" not in expected:
        n = len(forward)
        return f"it returned {describe(actual['output'])}; expected a tuple of {n} values"
    for key in forward + backward:
        if key not in actual:
            return f"{key} is missing from what it returned"
        problem = difference(key, actual[key], expected[key], tolerance)
        if problem:
            return problem
    return None
