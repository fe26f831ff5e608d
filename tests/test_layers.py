"""The package's two layers: what a notebook imports, and the tooling built on it.

``course_utils`` (data, blocks, checks, plotting, training, device, metrics, speed) must work
with the base dependencies alone, so no module of it may import ``course_utils.tools``, not
even inside a function; the tools import the student-facing modules freely.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import course_utils

PACKAGE = Path(course_utils.__file__).parent
TOOLS = PACKAGE / "tools"
#: ``__main__`` is the one bridge: ``python -m course_utils`` starts the tools' command line
#: (a notebook never imports it).
STUDENT_FACING = sorted(p for p in PACKAGE.rglob("*.py")
                        if TOOLS not in p.parents and p != PACKAGE / "__main__.py")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports in functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_layers_exist():
    assert len(STUDENT_FACING) > 20 and (TOOLS / "cli.py").is_file()
    assert (TOOLS / "grading" / "sandbox.py").is_file() and (TOOLS / "bench").is_dir()


@pytest.mark.parametrize("path", STUDENT_FACING, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_student_facing_module_imports_the_tooling(path):
    tooling = sorted(name for name in imported_modules(path)
                     if name == "course_utils.tools" or name.startswith("course_utils.tools."))
    assert not tooling, f"{path.relative_to(PACKAGE)} imports {tooling}"


def test_the_test_sees_a_lazy_import(tmp_path):
    """The scan would catch the layering slip the review found (an import inside a function)."""
    module = tmp_path / "slip.py"
    module.write_text("def f():\n    from course_utils.tools.paths import nbgrader_env\n")
    assert "course_utils.tools.paths" in imported_modules(module)


def test_a_notebooks_imports_load_no_tooling():
    """What every set-up cell imports, in a fresh interpreter, leaves the tools unloaded."""
    code = ("import sys, course_utils, course_utils.data, course_utils.blocks, "
            "course_utils.plotting, course_utils.training, course_utils.device, "
            "course_utils.metrics\n"
            "from course_utils.checks import welcome, convolution, vit, contrastive, clip, "
            "vilt, diffusion\n"
            "print(sorted(m for m in sys.modules if m.startswith('course_utils.tools')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout


#: Import name → distribution, where they differ.
DISTRIBUTION = {"open_clip": "open_clip_torch"}
#: Imported only inside a running kernel, behind ``except ImportError`` (``metrics._in_ipython``).
KERNEL_ONLY = {"IPython"}
TOOLING = {"nbgrader", "jupytext", "nbclient", "nbformat", "jupyter_client", "jupyter_core",
           "ipykernel", "jupyterlab", "pytest", "selenium", "ruff"}


def base_dependencies() -> set[str]:
    import re

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower().replace("-", "_")
            for spec in project["dependencies"]}


def test_the_base_install_is_what_the_notebooks_import_and_no_tooling():
    """``pip install .`` brings what the student-facing modules import, and nothing of the
    instructor tooling (that is the ``instructor`` extra)."""
    imported = {name.split(".")[0] for path in STUDENT_FACING for name in imported_modules(path)}
    third_party = imported - set(sys.stdlib_module_names) - {"course_utils"} - KERNEL_ONLY
    needed = {DISTRIBUTION.get(name, name).lower() for name in third_party}
    base = base_dependencies()
    assert needed <= base, f"imported but not a base dependency: {sorted(needed - base)}"
    assert not base & TOOLING, f"tooling in the base dependencies: {sorted(base & TOOLING)}"
