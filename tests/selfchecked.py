"""Notebooks run once by ``python -m course_utils check`` and shared by the tests reading them.

Each run is a fresh kernel executing the whole notebook (seconds for the notebooks used
here), so the tests of the score table and of the students' feedback read the same runs.
"""

from __future__ import annotations

import functools
from pathlib import Path

from course_utils.tools import selfcheck
from tests.notebook_code import ROOT

#: Per-cell limit of the test runs: far above what these notebooks need.
CELL_TIMEOUT = 300


def notebook_path(name: str, kind: str) -> Path:
    """The released solution (``kind="solution"``) or the blank student notebook."""
    folder = {"solution": "solutions", "blank": "notebooks"}[kind]
    return ROOT / folder / name / f"{name}.ipynb"


@functools.cache
def report(name: str, kind: str) -> selfcheck.Report:
    return selfcheck.check(notebook_path(name, kind), cell_timeout=CELL_TIMEOUT)
