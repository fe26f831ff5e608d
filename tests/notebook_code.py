"""Load the exercises of a solution notebook, to test the checks against them.

The tests take the solutions from the notebooks' sources (never from a copy in tests/): an
exercise cell may use what the set-up cell imports and what earlier exercise cells and
``helpers_*`` cells define, and nothing else; the rest of the notebook (pictures, training)
is not run here.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def assignments() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "solutions").glob("*/*.py")
                  if p.stem == p.parent.name)


def solution_notebook(name: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", as_version=4)


def exercise_cells(notebook: nbformat.NotebookNode) -> list[str]:
    sources = []
    for cell in notebook.cells:
        info = cell.metadata.get("nbgrader", {})
        grade_id = info.get("grade_id", "")
        if cell.cell_type == "code" and (
            info.get("solution") or grade_id == "setup" or grade_id.startswith("helpers")
        ):
            sources.append(cell.source)
    return sources


def load_solution(name: str) -> dict:
    """The namespace made by running the set-up, helper and exercise cells of ``name``."""
    namespace: dict = {"__name__": f"solution_{name}"}
    for index, source in enumerate(exercise_cells(solution_notebook(name))):
        exec(compile(source, f"<{name} cell {index}>", "exec"), namespace)  # noqa: S102
    return namespace
