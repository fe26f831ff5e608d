"""Load the exercises of a solution notebook, to test the checks against them.

The tests take the solutions from the notebooks' sources (never from a copy in tests/); the
loading itself is ``course_utils.tools.solutions`` (the benchmark command uses it too).
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from course_utils.tools import release, solutions
from course_utils.tools.solutions import exercise_cells  # noqa: F401 (part of this module's API)

ROOT = Path(__file__).resolve().parents[1]


def assignments() -> list[str]:
    return release.assignments(ROOT)


def solution_notebook(name: str) -> nbformat.NotebookNode:
    return solutions.solution_notebook(ROOT, name)


def load_solution(name: str) -> dict:
    """The namespace made by running the set-up, helper and exercise cells of ``name``."""
    return solutions.load_solution(ROOT, name)


def rejects(check, implementation, *fragments: str) -> str:
    """Run ``check`` on ``implementation``; it must fail with every fragment in its message.

    Returns the message, for further assertions.
    """
    import pytest

    from course_utils.checks.failure import CheckFailure

    with pytest.raises(CheckFailure) as failure:
        check(implementation)
    message = str(failure.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    return message


def check_skips_offline(source: str, sentence: str, variable: str, capsys) -> None:
    """Run an optional "pretrained" cell with the network switched off (the ``offline``
    fixture): within 3 s it must print ``sentence`` alone, nothing on stderr, and leave
    ``variable`` None."""
    import time

    import course_utils

    namespace: dict = {"course_utils": course_utils}
    start = time.perf_counter()
    exec(compile(source, "<pretrained section>", "exec"), namespace)
    assert time.perf_counter() - start < 3
    captured = capsys.readouterr()
    assert captured.out.strip() == sentence
    assert captured.err == ""
    assert namespace[variable] is None
