"""Build the notebooks from their sources: ``python -m course_utils release``.

Each lesson is written once, as a jupytext "percent" script that carries nbgrader's cell
metadata: ``solutions/NN_name/NN_name.py``. From it:

1. ``solutions/NN_name/NN_name.ipynb``, the instructor notebook (nbgrader's *source*), is
   written with jupytext: no outputs, no execution counts, stable cell ids;
2. ``notebooks/NN_name/NN_name.ipynb``, the student notebook (nbgrader's *release*), is
   generated from it by ``nbgrader generate_assignment``: solutions replaced by stubs,
   hidden tests removed, outputs cleared.

Nothing in ``notebooks/`` is edited by hand; ``release --check`` (and the test suite) fail
when a committed notebook differs from what its source makes.
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from course_utils.tools.paths import nbgrader_env

#: Notebook-level metadata kept in the generated notebooks (the rest is editor state).
KEEP_METADATA = ("kernelspec", "language_info", "colab")


def assignments(root: Path) -> list[str]:
    """Names of the assignments: the ``solutions/NN_name/NN_name.py`` sources, in order."""
    return sorted(p.parent.name for p in (root / "solutions").glob("*/*.py")
                  if p.stem == p.parent.name)


def build_solution_notebook(source: Path) -> nbformat.NotebookNode:
    """The instructor notebook made from a jupytext percent source, normalised."""
    import jupytext

    notebook = jupytext.read(source, fmt="py:percent")
    notebook.metadata = {k: v for k, v in notebook.metadata.items() if k in KEEP_METADATA}
    for index, cell in enumerate(notebook.cells):
        cell.metadata.pop("lines_to_next_cell", None)
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        cell.id = grade_id or f"cell-{index:03d}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.validate(notebook)
    return notebook


def write_notebook(notebook: nbformat.NotebookNode, path: Path) -> bool:
    """Write ``notebook`` to ``path`` unless it is already there; True when written."""
    text = nbformat.writes(notebook) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def generate_student_notebook(root: Path, name: str) -> None:
    """``nbgrader generate_assignment`` for one assignment, into ``notebooks/``."""
    command = [sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force",
               "--no-db", "--log-level=WARN", f"--CourseDirectory.root={root}"]
    result = subprocess.run(command, cwd=root, env=nbgrader_env(), capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment {name} failed:\n{result.stderr}")


def release(root: Path, names: list[str] | None = None, quiet: bool = False) -> list[Path]:
    """Rebuild the solution and student notebooks of ``names`` (default: all); return the
    files that changed."""
    changed = []
    for name in names or assignments(root):
        source = root / "solutions" / name / f"{name}.py"
        if not source.is_file():
            raise FileNotFoundError(f"no source for {name}: expected {source}")
        solution = root / "solutions" / name / f"{name}.ipynb"
        if write_notebook(build_solution_notebook(source), solution):
            changed.append(solution)
        student = root / "notebooks" / name / f"{name}.ipynb"
        before = student.read_bytes() if student.exists() else None
        generate_student_notebook(root, name)
        if student.read_bytes() != before:
            changed.append(student)
        if not quiet:
            print(f"released {name}")
    return changed


def stale(root: Path, names: list[str] | None = None) -> list[str]:
    """Committed notebooks of ``names`` (default: all) that differ from what their sources
    make (built in a temporary copy; nothing in ``root`` changes)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        shutil.copy2(root / "nbgrader_config.py", copy)
        shutil.copytree(root / "solutions", copy / "solutions",
                        ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
        release(copy, names, quiet=True)
        problems = []
        for built in sorted(copy.glob("*/*/*.ipynb")):
            relative = built.relative_to(copy)
            committed = root / relative
            if not committed.exists():
                problems.append(f"{relative} is missing")
            elif not filecmp.cmp(built, committed, shallow=False):
                problems.append(f"{relative} is stale")
        for committed in sorted(root.glob("notebooks/*/*.ipynb")):
            if names and committed.parent.name not in names:
                continue
            if not (copy / committed.relative_to(root)).exists():
                problems.append(f"{committed.relative_to(root)} has no source")
        return problems
