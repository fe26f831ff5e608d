"""What a check exchanges with the code it checks: a ``Case`` in, ``Outputs`` out.

A case is plain data (names, tensors, numbers), made by the trusted side from a seed; the
outputs are plain data too, so that the student's code can run in another process (the
grader's sandbox) and the comparison in a trusted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

#: A name -> value mapping of everything an implementation produced on a case: ``"output"``
#: (or ``"output[0]"``, ``"output[1]"``, ... for tuples), ``"grad[x]"`` for the gradient with
#: respect to input ``x``, and ``"raised"`` when it raised an expected exception.
Outputs = dict[str, Any]

#: (rtol, atol) per dtype, for comparisons of values computed in different orders.
TOLERANCES = {
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (2e-2, 1e-2),
    torch.float32: (1e-4, 1e-5),
    torch.float64: (1e-7, 1e-9),
}


@dataclass
class Case:
    """One input to an exercise.

    Args:
        name: what the case is, shown in failure messages ("batch 1, 7×5 image, stride 2").
        inputs: argument name -> value, in the exercise's signature order; tensors are cloned
            before every call, so an implementation can never change another's inputs.
        keyword: names passed by keyword (the others are passed by position, in order).
        grad: names of the inputs whose gradients are compared (backpropagating a fixed
            random upstream gradient through every floating-point output).
        raises: an exception type the call must raise (a bad shape -> ``ValueError``).
        tolerance: (rtol, atol) overriding the dtype's default.
        private: data the trusted side keeps to itself (e.g. the true labels of a quality
            check's held-out images); never passed to the student's code.
    """

    name: str
    inputs: dict[str, Any]
    keyword: Sequence[str] = ()
    grad: Sequence[str] = ()
    raises: type[BaseException] | None = None
    tolerance: tuple[float, float] | None = None
    private: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Case:
        """The same case with its tensors on ``device`` (named in the case's description)."""
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self.inputs.items()}
        return replace(self, name=f"{self.name}, on {torch.device(device).type}", inputs=inputs)


@dataclass
class Mistake:
    """A common wrong answer, written as an implementation with the exercise's interface."""

    hint: str
    implementation: Callable


def devices() -> list[torch.device]:
    """The devices checks run on: the CPU, and CUDA when present (MPS lacks float64)."""
    found = [torch.device("cpu")]
    if torch.cuda.is_available():
        found.append(torch.device("cuda"))
    return found
