"""What a student sees when a check fails: one short message, never a stack trace of ours."""

from __future__ import annotations

import traceback
from pathlib import Path

import torch

_COURSE_UTILS = str(Path(__file__).resolve().parents[1])
_TORCH = str(Path(torch.__file__).resolve().parent)


class CheckFailure(AssertionError):
    """A check rejected the student's code.

    The message names the exercise and the case, says what was expected and what came back,
    and, when the check recognises a common mistake, adds a hint naming it. In Jupyter the
    traceback is replaced by that message (plus the student's own frames when their code
    raised): students never read through the course's internals.
    """

    def __init__(self, exercise: str, problem: str, case: str | None = None,
                 hint: str | None = None):
        self.exercise, self.problem, self.case, self.hint = exercise, problem, case, hint
        lines = [f"{exercise}: {problem}"]
        if case:
            lines.append(f"  case: {case}")
        if hint:
            lines.append(f"  Hint: {hint}")
        super().__init__("\n".join(lines))

    def _render_traceback_(self) -> list[str]:
        """IPython calls this instead of printing a full traceback."""
        lines: list[str] = []
        cause = self.__cause__
        if cause is not None and not isinstance(cause, CheckFailure):
            lines += student_traceback(cause)
            lines.append("")
        lines.append(f"CheckFailure: {self}")
        return lines


def student_traceback(error: BaseException) -> list[str]:
    """The traceback of ``error`` without the frames of course_utils and torch.

    What remains are the frames of the student's own code (notebook cells), which is where
    the bug is.
    """
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith((_COURSE_UTILS, _TORCH))
    ]
    lines = ["Traceback (your code):"] if frames else []
    lines += [line.rstrip("\n") for line in traceback.format_list(frames)]
    lines += [line.rstrip("\n") for line in traceback.format_exception_only(type(error), error)]
    return lines
