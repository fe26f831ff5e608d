"""An exercise's docstring names everything the lesson uses of the student's code.

A student writes an exercise from its signature and docstring; the checks test exactly that
contract. If a later cell of the lesson reads an attribute or calls a method of the
student's object that the docstring never mentions (``embeddings.num_patches``), a correct
implementation that follows the docstring passes its check and then breaks Run All. For
every exercise class of every notebook: each attribute the student's part sets on ``self``
and each method it defines (what the released stub does not give) that a later cell (not an
exercise cell) reads must be named in its docstring (or in the statement right above the
exercise cell).
"""

from __future__ import annotations

import ast

import nbformat
import pytest

from tests.notebook_code import ROOT, assignments


def nbgrader(cell) -> dict:
    info = cell.get("metadata", {}).get("nbgrader", {})
    return info if isinstance(info, dict) else {}


def exercise_classes(tree: ast.AST) -> list[ast.ClassDef]:
    return [node for node in tree.body if isinstance(node, ast.ClassDef)]


def provided(cls: ast.ClassDef) -> set[str]:
    """Attributes the class sets on ``self`` and methods it defines (not dunders, not
    ``forward``, which the docstring describes by its call)."""
    names = {node.name for node in cls.body
             if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
             and not node.name.startswith("__") and node.name != "forward"}
    for node in ast.walk(cls):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else []
        for target in targets:
            for item in ast.walk(target):
                if isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name) and \
                        item.value.id == "self":
                    names.add(item.attr)
    return names


def read_attributes(source: str) -> set[str]:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return set()
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)}


def undocumented(name: str) -> list[str]:
    notebook = nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", as_version=4)
    released = {}  # what students are given of each exercise class
    release_path = ROOT / "notebooks" / name / f"{name}.ipynb"
    if release_path.exists():
        for cell in nbformat.read(release_path, as_version=4).cells:
            if cell.cell_type == "code" and nbgrader(cell).get("solution"):
                try:
                    released.update({c.name: provided(c)
                                     for c in exercise_classes(ast.parse(cell.source))})
                except SyntaxError:
                    continue
    problems = []
    for position, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or not nbgrader(cell).get("solution"):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        spec = []  # the exercise's statement: the Markdown cells right above it
        for before in reversed(notebook.cells[:position]):
            if before.cell_type != "markdown":
                break
            spec.append(before.source)
        for cls in exercise_classes(tree):
            docstring = (ast.get_docstring(cls) or "") + "\n".join(spec)
            names = provided(cls) - released.get(cls.name, set())  # what the student writes
            for later in notebook.cells[position + 1:]:
                if later.cell_type != "code" or nbgrader(later).get("solution"):
                    continue
                for attribute in sorted(read_attributes(later.source) & names):
                    if attribute not in docstring:
                        first = later.source.strip().splitlines()[0][:60]
                        problems.append(f"{cls.name}.{attribute} is read by the cell "
                                        f"`{first}` but its docstring never names it (nor "
                                        "the statement above it)")
    return sorted(set(problems))


@pytest.mark.parametrize("name", assignments())
def test_later_cells_use_only_what_the_exercise_docstrings_promise(name):
    assert undocumented(name) == []


def test_the_guard_catches_an_undocumented_attribute(tmp_path, monkeypatch):
    """The trap notebook 05 had: ``embeddings.num_patches`` read by a lesson cell."""
    cells = [
        nbformat.v4.new_code_cell(
            'class Embeddings:\n    """Tokens of an image.\n\n    forward(x): (B, N, D)."""\n\n'
            '    def __init__(self):\n        self.num_patches = 16\n',
            metadata={"nbgrader": {"solution": True, "grade_id": "Embeddings"}}),
        nbformat.v4.new_code_cell("embeddings = Embeddings()\nprint(embeddings.num_patches)"),
    ]
    folder = tmp_path / "solutions" / "99_trap"
    folder.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), folder / "99_trap.ipynb")
    monkeypatch.setattr("tests.test_contracts.ROOT", tmp_path)
    assert undocumented("99_trap") == [
        "Embeddings.num_patches is read by the cell `embeddings = Embeddings()` but its "
        "docstring never names it (nor the statement above it)"]
