"""Autograded checks: a package per notebook, a file per exercise.

A test cell reads ``checks.conv2d(conv2d)``: the notebook imports its own package as
``checks`` (``from course_utils.checks import convolution as checks``), which re-exports each
exercise's check under the exercise's name. Every check compares the student's code with a
reference over seeded cases on every available device and raises a ``CheckFailure`` with a hint
on the first problem.

The shared mechanics, one idea per module:

- ``case``: a seeded ``Case``, a known ``Mistake`` and its hint, the tolerances, the devices;
- ``compare``: how two outputs differ, said in words a student can act on;
- ``runners``: calling a function exercise, building and running a module exercise with the
  case's weights (one key convention, one ``WrongParameters`` for a misnamed parameter);
- ``stochastic``: judging random procedures (masking, sampling) by their statistics;
- ``core``: ``Check`` (cases × devices, known mistakes, forbidden functions) and
  ``QualityCheck`` (a trained model's score; the graded thresholds live there alone);
- ``forbid``: refusing the library function an exercise asks the student to write.

A new exercise is one file in its notebook's package: its reference, its cases, its known
mistakes with their hints and the functions it forbids, ending in one ``Check(...)``.
"""

from course_utils.checks.case import Case, Mistake, Outputs, devices
from course_utils.checks.core import Check, QualityCheck, at_least
from course_utils.checks.failure import CheckFailure
from course_utils.checks.forbid import Forbidden, ForbiddenFunctionError
from course_utils.checks.runners import run_function

__all__ = [
    "Case", "Check", "CheckFailure", "Forbidden", "ForbiddenFunctionError", "Mistake",
    "QualityCheck", "at_least",
    "Outputs", "devices", "run_function",
]
