"""Checks of random procedures: judged by properties and frequencies, not by equal values.

A random procedure (masking tokens, sampling noise and a timestep) is right however it uses
its generator, so its outputs cannot be compared with a reference's value by value. A
``StochasticCheck`` runs the student's code (``run``, often many seeded draws), then:

1. compares types, shapes, dtypes and devices with the reference's outputs;
2. hands the outputs to a trusted ``judge(case, actual, expected) -> (problem, hint) | None``
   that tests invariants ("a masked position holds <mask> or a random word") and frequencies
   (``frequency_problem``: within 5 standard deviations of the expected probability).

A case that must raise is compared as in every check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from course_utils.checks.case import Case, Outputs
from course_utils.checks.compare import first_difference, tensor_structure_difference
from course_utils.checks.core import Check
from course_utils.checks.failure import CheckFailure

#: (problem, hint) or None: a judge's verdict.
Verdict = tuple[str, str | None] | None


@dataclass
class StochasticCheck(Check):
    """A check of a random procedure: structure compared with the reference's outputs, values
    judged by the trusted ``judge(case, actual, expected) -> (problem, hint) | None``."""

    judge: Callable[[Case, Outputs, Outputs], Verdict] = \
        field(default=lambda case, actual, expected: None)

    def compare(self, case: Case, actual: Outputs, expected: Outputs) -> None:
        if "raised" in expected:
            problem = first_difference(actual, expected)
            if problem:
                raise CheckFailure(self.exercise, problem, case.name)
            return
        for key, value in expected.items():  # 1. types, shapes, dtypes, devices
            problem = structure_difference(key, actual.get(key, _MISSING), value)
            if problem:
                raise CheckFailure(self.exercise, problem, case.name)
        verdict = self.judge(case, actual, expected)  # 2. the draws themselves
        if verdict:
            problem, hint = verdict
            raise CheckFailure(self.exercise, problem, case.name, hint)


_MISSING = object()


def structure_difference(key: str, actual: Any, expected: Any) -> str | None:
    """Why output ``key`` cannot stand for the reference's (missing, or a tensor of another
    shape, dtype or device); None when it can. Values are not compared."""
    what = {"output[0]": "the first returned value", "output[1]": "the second returned value",
            "output[2]": "the third returned value"}.get(key, key)
    if actual is _MISSING:
        if key.startswith("output["):
            return f"it returned fewer values than expected; {what} is missing"
        return f"{key} is missing"
    if not torch.is_tensor(expected):
        return None
    return tensor_structure_difference(what, actual, expected)


def frequency_problem(what: str, hits: int, total: int, probability: float,
                      inverted_hint: str | None = None, tail: str = "") -> Verdict:
    """(problem, hint) when ``hits / total`` is not within 5 standard deviations (plus 0.005)
    of ``probability``; None when it is. A correct procedure fails this about once in 3.5
    million draws of the whole check.

    ``inverted_hint`` is the hint when the frequency matches ``1 - probability`` instead (a
    comparison written the wrong way round).
    """
    fraction = hits / max(total, 1)
    tolerance = 5 * math.sqrt(probability * (1 - probability) / max(total, 1)) + 0.005
    if abs(fraction - probability) <= tolerance:
        return None
    problem = (f"{what} in {fraction:.3f} of {total} draws, expected about {probability:.3f}"
               f" (± {tolerance:.3f}){tail}")
    hint = None
    if inverted_hint and abs(probability - 0.5) > tolerance and \
            abs(fraction - (1 - probability)) <= tolerance:
        hint = inverted_hint
    return problem, hint
