"""A class's submissions as found, and the course folder they are graded in.

``discover`` finds the submissions (nbgrader's ``submitted/<student>/<assignment>/`` or a flat
folder of ``<student>.ipynb``); ``prepare_assignment`` registers an assignment in the
gradebook; ``copy_submission`` brings a submission into the course's ``submitted/`` folder;
``preflight_notebook`` makes the instructor's own solution the first submission graded.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path

import nbformat

from course_utils.tools.grading import plan as plans
from course_utils.tools.grading import submission as submissions


@dataclass
class Entry:
    """One student's submission of one assignment, as found."""

    assignment: str
    student: str
    notebook: Path | None  # None: the folder holds no such notebook
    folder: Path | None  # nbgrader layout: the submission's folder
    note: str = ""
    received: float | None = None  # when the file reached the instructor's side (ctime)
    digest: str | None = None  # sha256 of the notebook (--resume: was it changed since?)


def received_time(notebook: Path | None, folder: Path | None) -> float | None:
    """When the submission reached this machine: the inode change time of its notebook (or of
    its folder), which ``nbgrader collect``, a download or a copy sets and which no student
    can choose (``os.utime`` sets the modification time, and changes this one to now)."""
    for path in (notebook, folder):
        if path is not None:
            try:
                return os.lstat(path).st_ctime
            except OSError:
                continue
    return None


# --- finding the submissions ------------------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9._@+-]")


def student_id(name: str) -> str:
    """A student id usable as a folder name (an LMS's file names are not)."""
    cleaned = _SAFE.sub("_", name).strip("._") or "student"
    return cleaned[:100]


def discover(root: Path, known: list[str], wanted: list[str] | None) -> tuple[list[Entry],
                                                                            list[str]]:
    """The submissions under ``root`` and warnings about what was skipped.

    nbgrader's layout when a sub-folder of ``root`` holds a folder named like an assignment;
    else a flat folder of ``<student>.ipynb`` (which needs exactly one assignment in ``wanted``).
    """
    root = Path(root)
    warnings: list[str] = []
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    students = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()
                      and not p.name.startswith("."))
    assignments = wanted or known
    nested = any((s / a).is_dir() for s in students for a in known)
    entries: list[Entry] = []
    if nested:
        for folder in students:
            for assignment in assignments:
                where = folder / assignment
                if not where.is_dir() or where.is_symlink():
                    continue
                notebook = where / f"{assignment}.ipynb"
                note = ""
                if not os.path.lexists(notebook):
                    others = sorted(p.name for p in where.glob("*.ipynb"))
                    note = f"found {', '.join(others)} instead" if others else ""
                found = notebook if os.path.lexists(notebook) else None
                entries.append(Entry(assignment, student_id(folder.name), found, where, note,
                                     received_time(found, where)))
        return entries, warnings
    files = sorted(p for p in root.iterdir() if p.name.endswith(".ipynb"))
    if not files:
        return [], warnings
    if not wanted or len(wanted) != 1:
        raise ValueError(f"{root} is a flat folder of notebooks: name its assignment with "
                         "--assignment NN_name")
    taken: set[str] = set()
    for path in files:
        student = student_id(path.name[:-len(".ipynb")])
        base, count = student, 1
        while student in taken:
            count += 1
            student = f"{base}-{count}"
        if student != base:
            warnings.append(f"{path.name}: another file has the same student id; "
                            f"graded as {student}")
        taken.add(student)
        entries.append(Entry(wanted[0], student, path, None, received=received_time(path, None)))
    for other in sorted(p.name for p in root.iterdir() if p.is_file()
                        and not p.name.endswith(".ipynb")):
        warnings.append(f"ignored {other} (not a notebook)")
    return entries, warnings


# --- the course ------------------------------------------------------------------------------


def course_assignments(course: Path) -> list[str]:
    return sorted(p.parent.name for p in (course / "solutions").glob("*/*.ipynb")
                  if p.stem == p.parent.name)


def prepare_assignment(course: Path, name: str, workspace: Path) -> tuple[Path, str]:
    """Register ``name`` in the gradebook; return its release notebook and a snapshot URL of
    the gradebook (read by the workers while the main process writes the real one)."""
    from course_utils.tools.grading.nbgrader import nbgrader

    release = workspace / "release"
    nbgrader(course, "generate_assignment", name, "--force", "--log-level=WARN",
             f"--CourseDirectory.release_directory={release}")
    snapshot = workspace / f"gradebook-{name}.db"
    with contextlib.closing(sqlite3.connect(course / "gradebook.db")) as live, \
            contextlib.closing(sqlite3.connect(snapshot)) as copy:
        live.backup(copy)
    return release / name / f"{name}.ipynb", f"sqlite:///{snapshot}"


def copy_submission(entry: Entry, course: Path) -> Entry:
    """The entry as it lies in the course's ``submitted/`` folder (copied there if needed)."""
    target = course / "submitted" / entry.student / entry.assignment
    if entry.folder is not None and entry.folder.resolve() == target.resolve():
        return entry
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    if entry.folder is not None:
        submissions.copy_files(entry.folder, target)
    notebook = None
    if entry.notebook is not None:
        notebook = target / f"{entry.assignment}.ipynb"
        if entry.notebook.is_symlink() or not entry.notebook.is_file():
            notebook = entry.notebook  # graded (and refused) where it is; never followed
        elif not notebook.exists():
            shutil.copyfile(entry.notebook, notebook)
    return replace(entry, notebook=notebook, folder=target)


def preflight_notebook(source: Path, release: Path, target: Path) -> Path:
    """The release notebook with the instructor's solutions in its exercise cells."""
    solutions = {plans.nbgrader_info(c).get("grade_id"): c.source
                 for c in nbformat.read(source, as_version=4).cells
                 if c.cell_type == "code" and plans.nbgrader_info(c).get("solution")}
    notebook = nbformat.read(release, as_version=4)
    for cell in notebook.cells:
        grade_id = plans.nbgrader_info(cell).get("grade_id")
        if cell.cell_type == "code" and grade_id in solutions:
            cell.source = solutions[grade_id]
    nbformat.write(notebook, target)
    return target
