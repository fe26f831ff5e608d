"""Read a submission safely and give it back the instructor's cells.

:func:`load` reads a submitted notebook without trusting it: it must be a regular file (never
a link: a link could point at the solutions), below a size limit, valid JSON and a notebook;
anything else is ``invalid_notebook`` (``missing_notebook`` when there is no file).

:func:`restore` then makes the notebook that is run:

1. every cell that claims a ``grade_id`` of the assignment gets the instructor's nbgrader
   metadata back (edited points, flags and checksums are ignored); a cell that claims one the
   assignment does not have loses its claim;
2. nbgrader's own sanitizers run (``ClearOutput``, ``DeduplicateIds``, ``OverwriteKernelspec``,
   ``OverwriteCells`` with ``add_missing_cells``, ``CheckCellMetadata``): deleted test cells
   come back, edited, duplicated and retyped ones are overwritten with the instructor's copy;
3. deleted read-only cells (the set-up cell, ``helpers_*``), which nbgrader does not add back,
   are restored too;
4. hidden tests are removed from the test cells: the kernel never sees them (they are run by
   the re-check, outside the kernel).

If nbgrader's sanitizers fail on a mangled notebook, it is rebuilt from the student notebook
of the release, with the student's exercise cells put in. Every change is reported, so that
the grader can flag the submission (``cells_restored``).
"""

from __future__ import annotations

import copy
import errno
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course_utils.tools.grading.plan import BEGIN_HIDDEN, END_HIDDEN, nbgrader_info
from course_utils.tools.grading.safefile import UnsafeFile, read_regular

#: The largest notebook file read (a notebook of outputs-free code is a few hundred kB).
MAX_NOTEBOOK_BYTES = 64 << 20


@dataclass
class Loaded:
    notebook: nbformat.NotebookNode | None
    reason: str | None = None  # "missing_notebook" or "invalid_notebook"
    detail: str = ""


def load(path: Path | None, max_bytes: int = MAX_NOTEBOOK_BYTES) -> Loaded:
    """The submitted notebook, or why it cannot be graded."""
    if path is None:
        return Loaded(None, "missing_notebook", "no notebook was submitted")
    try:
        raw = read_regular(path, max_bytes)
    except UnsafeFile as error:
        if error.errno == errno.ENOENT:
            return Loaded(None, "missing_notebook", f"no file {Path(path).name}")
        return Loaded(None, "invalid_notebook", str(error))
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        return Loaded(None, "invalid_notebook", f"not valid JSON: {str(error)[:120]}")
    try:
        return Loaded(normalise(data))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as error:
        return Loaded(None, "invalid_notebook", f"not a notebook: {str(error)[:120]}")


def normalise(data: dict) -> nbformat.NotebookNode:
    """A well-formed nbformat 4 notebook holding only the submission's cells' type, source and
    nbgrader metadata (outputs and other metadata are dropped: they are never trusted)."""
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise ValueError("no list of cells")
    if data.get("nbformat") != 4:
        raise ValueError(f"nbformat {data.get('nbformat')!r} (expected 4)")
    notebook = nbformat.v4.new_notebook()
    for raw in data["cells"]:
        if not isinstance(raw, dict):
            continue
        source = raw.get("source", "")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        if not isinstance(source, str):
            source = ""
        kind = raw.get("cell_type")
        maker = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
                 "raw": nbformat.v4.new_raw_cell}.get(kind, nbformat.v4.new_raw_cell)
        cell = maker(source)
        metadata = raw.get("metadata")
        info = metadata.get("nbgrader") if isinstance(metadata, dict) else None
        if isinstance(info, dict):
            cell.metadata["nbgrader"] = json.loads(json.dumps(info))
        notebook.cells.append(cell)
    return notebook


# --- restoring the instructor's cells ----------------------------------------------------------


def strip_hidden_tests(source: str) -> str:
    """The source without its ``### BEGIN/END HIDDEN TESTS`` blocks (as nbgrader releases it)."""
    lines, inside = [], False
    for line in source.split("\n"):
        if BEGIN_HIDDEN in line:
            inside = True
        elif END_HIDDEN in line:
            inside = False
        elif not inside:
            lines.append(line)
    return "\n".join(lines)


def is_locked(info: dict) -> bool:
    """nbgrader's rule: grade cells and locked cells are read-only, solution cells are not."""
    if not info or info.get("solution"):
        return False
    return bool(info.get("grade") or info.get("locked"))


@dataclass
class Restored:
    notebook: nbformat.NotebookNode
    changes: list[str] = field(default_factory=list)
    rebuilt: bool = False

    def solutions(self) -> dict[str, str]:
        """The student's exercise cells (code solution cells) by grade_id."""
        found = {}
        for cell in self.notebook.cells:
            info = nbgrader_info(cell)
            if cell.cell_type == "code" and info.get("solution") and info.get("grade_id"):
                found[info["grade_id"]] = cell.source
        return found


@dataclass
class Assignment:
    """What the sanitizer needs of an assignment: its instructor and release notebooks and
    the gradebook (read-only) that nbgrader's sanitizers consult."""

    name: str
    source: nbformat.NotebookNode
    release: nbformat.NotebookNode
    db_url: str

    def __post_init__(self) -> None:
        self.cells = {info["grade_id"]: cell for cell in self.source.cells
                      if (info := nbgrader_info(cell)).get("grade_id")}
        self.released = {info["grade_id"]: cell for cell in self.release.cells
                         if (info := nbgrader_info(cell)).get("grade_id")}
        self.order = list(self.cells)


def restore(notebook: nbformat.NotebookNode, assignment: Assignment,
            student: str) -> Restored:
    """The notebook to run, with the instructor's cells restored (see the module docstring)."""
    changes: list[str] = []
    notebook = copy.deepcopy(notebook)
    seen: dict[str, int] = {}
    for cell in notebook.cells:
        info = nbgrader_info(cell)
        if not info and "nbgrader" not in cell.metadata:
            continue
        grade_id = info.get("grade_id")
        if not isinstance(grade_id, str) or grade_id not in assignment.cells:
            if info.get("grade") or info.get("locked") or info.get("points"):
                changes.append(f"a cell claimed to be {grade_id!r}, which the assignment does "
                               "not have: its claim was ignored")
            cell.metadata.pop("nbgrader", None)
            continue
        seen[grade_id] = seen.get(grade_id, 0) + 1
        original = assignment.cells[grade_id]
        released = assignment.released.get(grade_id, original)
        wanted = nbgrader_info(released) or nbgrader_info(original)
        for key in ("grade", "solution", "locked", "points", "task"):
            if key in info and info.get(key) != wanted.get(key):
                changes.append(f"{grade_id}: its {key} was changed from {wanted.get(key)!r} "
                               f"to {info.get(key)!r}")
        if "checksum" in info and "checksum" in wanted and info["checksum"] != wanted["checksum"]:
            changes.append(f"{grade_id}: its checksum was changed")
        if is_locked(wanted):
            if cell.cell_type != original.cell_type:
                changes.append(f"{grade_id}: retyped from {original.cell_type} to "
                               f"{cell.cell_type}")
            elif cell.source != released.source:
                changes.append(f"{grade_id}: edited")
        cell.metadata["nbgrader"] = copy.deepcopy(dict(wanted))
    for grade_id, cell in assignment.cells.items():
        if not is_locked(nbgrader_info(cell)):
            continue
        if seen.get(grade_id, 0) == 0:
            changes.append(f"{grade_id}: deleted")
        elif seen[grade_id] > 1:
            changes.append(f"{grade_id}: duplicated ({seen[grade_id]} copies)")
    rebuilt = False
    try:
        notebook = _nbgrader_sanitize(notebook, assignment, student)
    except Exception as error:
        changes.append(f"the notebook was rebuilt from the release ({type(error).__name__}: "
                       f"{str(error)[:120]})")
        notebook = rebuild(notebook, assignment)
        rebuilt = True
    _restore_read_only(notebook, assignment, changes)
    for cell in notebook.cells:
        info = nbgrader_info(cell)
        if cell.cell_type == "code" and info.get("grade") and not info.get("solution"):
            cell.source = strip_hidden_tests(assignment.cells[info["grade_id"]].source)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    used: set[str] = set()
    for index, cell in enumerate(notebook.cells):  # stable cell ids: the same run to run
        grade_id = nbgrader_info(cell).get("grade_id")
        cell.id = grade_id if grade_id and grade_id not in used else f"cell-{index:03d}"
        used.add(cell.id)
    return Restored(notebook, changes, rebuilt)


def _nbgrader_sanitize(notebook, assignment: Assignment, student: str):
    from nbgrader.preprocessors import (
        CheckCellMetadata,
        ClearOutput,
        DeduplicateIds,
        OverwriteCells,
        OverwriteKernelspec,
    )

    resources = {"nbgrader": {"notebook": assignment.name, "assignment": assignment.name,
                              "student": student, "db_url": assignment.db_url}}
    for preprocessor in (ClearOutput(), DeduplicateIds(), OverwriteKernelspec(),
                         OverwriteCells(add_missing_cells=True), CheckCellMetadata()):
        notebook, resources = preprocessor.preprocess(notebook, resources)
    return notebook


def rebuild(notebook, assignment: Assignment) -> nbformat.NotebookNode:
    """The release notebook with the student's exercise and answer cells put in."""
    answers = {}
    for cell in notebook.cells:
        info = nbgrader_info(cell)
        if info.get("solution") and info.get("grade_id") in assignment.cells:
            answers[info["grade_id"]] = cell.source
    rebuilt = copy.deepcopy(assignment.release)
    for cell in rebuilt.cells:
        grade_id = nbgrader_info(cell).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return rebuilt


def _restore_read_only(notebook, assignment: Assignment, changes: list[str]) -> None:
    """Put back the locked read-only cells nbgrader does not add (set-up, helpers)."""
    present = {nbgrader_info(c).get("grade_id") for c in notebook.cells}
    for position, grade_id in enumerate(assignment.order):
        info = nbgrader_info(assignment.cells[grade_id])
        if grade_id in present or info.get("grade") or not is_locked(info):
            continue
        cell = copy.deepcopy(assignment.released.get(grade_id, assignment.cells[grade_id]))
        index = 0
        for previous in reversed(assignment.order[:position]):
            found = [i for i, c in enumerate(notebook.cells)
                     if nbgrader_info(c).get("grade_id") == previous]
            if found:
                index = found[-1] + 1
                break
        notebook.cells.insert(index, cell)
        present.add(grade_id)
        message = f"{grade_id}: restored"
        if message not in changes:
            changes.append(message)
