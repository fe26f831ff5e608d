"""Drive nbgrader from Python: make a course folder, submit, autograde, read the scores.

The test suite grades every notebook end to end with these functions, and the instructor's
grading command builds on them. nbgrader runs in a subprocess with this environment's bin
folder on PATH (it calls ``alembic`` by name when it creates the gradebook).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from course_utils.tools.paths import nbgrader_env


class NbgraderError(RuntimeError):
    """nbgrader exited with an error; the message holds the end of its log."""


def nbgrader(course: Path, *args: str, timeout: float | None = None) -> str:
    """Run ``nbgrader ARGS`` in the course folder ``course``; return its log."""
    command = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}"]
    result = subprocess.run(command, cwd=course, env=nbgrader_env(), capture_output=True,
                            text=True, timeout=timeout)
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise NbgraderError(f"`nbgrader {' '.join(args)}` failed:\n{log[-4000:]}")
    return log


def make_course(course: Path, repository: Path, names: list[str]) -> Path:
    """A fresh nbgrader course folder holding the config and the solutions of ``names``,
    with each assignment generated (gradebook entries and student notebooks)."""
    course.mkdir(parents=True, exist_ok=True)
    shutil.copy2(repository / "nbgrader_config.py", course)
    for name in names:
        shutil.copytree(repository / "solutions" / name, course / "solutions" / name,
                        dirs_exist_ok=True)
        nbgrader(course, "generate_assignment", name, "--force")
    return course


def submit(course: Path, name: str, student: str, notebook: Path) -> Path:
    """Place ``notebook`` as ``student``'s submission of assignment ``name``."""
    folder = course / "submitted" / student / name
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(notebook, folder / f"{name}.ipynb"))


@dataclass
class CellGrade:
    score: float
    max_score: float
    needs_manual_grade: bool
    kind: str  # "test" (autograded code) or "answer" (graded by hand)


def autograde(course: Path, name: str, timeout: float | None = None) -> str:
    """``nbgrader autograde`` every submission of ``name``; return the log."""
    return nbgrader(course, "autograde", name, "--force", timeout=timeout)


def grades(course: Path, name: str, student: str) -> dict[str, CellGrade]:
    """grade_id -> CellGrade for one autograded submission, read from the gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        notebook = gradebook.find_submission_notebook(name, name, student)
        return {
            grade.name: CellGrade(
                score=float(grade.score), max_score=float(grade.max_score),
                needs_manual_grade=bool(grade.needs_manual_grade),
                kind="test" if grade.cell.cell_type == "code" else "answer",
            )
            for grade in notebook.grades
        }
