"""The exercises of a solution notebook, loaded as a namespace (for the tests and the benchmark).

An exercise cell may use what the set-up cell imports and what earlier exercise cells and
``helpers_*`` cells define, and nothing else; so running those cells, in order, gives every
exercise's solution without the rest of the notebook (pictures, training).
"""

from __future__ import annotations

from pathlib import Path

import nbformat


def solution_notebook(root: Path, name: str) -> nbformat.NotebookNode:
    """The instructor notebook ``root/solutions/name/name.ipynb``."""
    return nbformat.read(Path(root) / "solutions" / name / f"{name}.ipynb", as_version=4)


def exercise_cells(notebook: nbformat.NotebookNode) -> list[str]:
    """The sources of the set-up, ``helpers_*`` and solution cells of ``notebook``, in order."""
    sources = []
    for cell in notebook.cells:
        info = cell.metadata.get("nbgrader", {})
        grade_id = info.get("grade_id", "")
        if cell.cell_type == "code" and (
            info.get("solution") or grade_id == "setup" or grade_id.startswith("helpers")
        ):
            sources.append(cell.source)
    return sources


def load_solution(root: Path, name: str) -> dict:
    """The namespace made by running the exercise cells of assignment ``name`` (e.g.
    ``load_solution(root, "01_convolution_pooling")["conv2d"]``). The set-up cell prints."""
    namespace: dict = {"__name__": f"solution_{name}"}
    for index, source in enumerate(exercise_cells(solution_notebook(root, name))):
        # dont_inherit: a cell is compiled as the kernel would, without this module's
        # `from __future__ import annotations` (a dataclass would then look for its module)
        exec(compile(source, f"<{name} cell {index}>", "exec", dont_inherit=True), namespace)
    return namespace
