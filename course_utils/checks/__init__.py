"""Autograded checks, one module per notebook.

A test cell reads ``checks.conv2d(conv2d)``: the notebook imports its own module as
``checks`` (``from course_utils.checks import welcome as checks``). Every check compares the
student's code with a reference over seeded cases on every available device and raises a
``CheckFailure`` with a hint on the first problem (see ``core`` for how).
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
