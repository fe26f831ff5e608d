"""What a student sees when a check runs in the notebook: readable messages, never our internals.

The blank student notebooks are run top to bottom (a fresh kernel, errors allowed, as
*Run All* does); every error a test cell shows must be the check's own message naming the
exercise, and no traceback line anywhere may point into course_utils. A recognised mistake
shows the failing case, expected and received values, and the hint; a passing check prints
one line saying what it checked.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import nbformat
import pytest

import course_utils.checks
from course_utils.checks.core import QualityCheck
from course_utils.tools import selfcheck
from course_utils.tools.grading.plan import nbgrader_info
from tests.notebook_code import ROOT, assignments
from tests.selfchecked import CELL_TIMEOUT, notebook_path, report

pytestmark = pytest.mark.notebook

ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: A file of course_utils, in a traceback line (source checkout or installed package).
INTERNAL = re.compile(r"course_utils[/\\]|site-packages[/\\]course_utils")


#: The names the graded quality checks (trained models) give themselves in their messages.
QUALITY_CHECKS = [value.exercise
                  for module in pkgutil.iter_modules(course_utils.checks.__path__)
                  for value in vars(importlib.import_module(
                      f"course_utils.checks.{module.name}")).values()
                  if isinstance(value, QualityCheck)]


def exercises(notebook) -> list[str]:
    """The grade_ids of the notebook's exercise (solution) code cells."""
    return [nbgrader_info(c)["grade_id"] for c in notebook.cells
            if c.cell_type == "code" and nbgrader_info(c).get("solution")]


def graded_tests(notebook) -> list[tuple[str, str, nbformat.NotebookNode]]:
    """(exercise, grade_id, cell) of every test cell; the exercise is the grade_id of the
    solution cell above it."""
    found, exercise = [], None
    for cell in notebook.cells:
        info = nbgrader_info(cell)
        if info.get("solution") and cell.cell_type == "code":
            exercise = info["grade_id"]
        elif info.get("grade") and not info.get("solution"):
            found.append((exercise, info["grade_id"], cell))
    return found


def shown(output) -> list[str]:
    """What the notebook displays of an error output, without colours."""
    return [line for entry in output.get("traceback", [])
            for line in ANSI.sub("", entry).splitlines()]


@pytest.mark.parametrize("name", assignments())
def test_blank_notebook_shows_only_readable_check_messages(name):
    notebook = report(name, "blank").executed
    for cell in notebook.cells:  # anywhere: no frame of ours reaches the student
        for output in cell.get("outputs", []):
            text = shown(output) + (output.get("text", "").splitlines()
                                    if output.get("name") == "stderr" else [])
            assert [line for line in text if INTERNAL.search(line)] == [], cell.source[:80]
    cells = graded_tests(notebook)
    assert cells
    for exercise, grade_id, cell in cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert len(errors) == 1, grade_id
        error = errors[0]
        lines = shown(error)
        assert len(lines) <= 12, lines  # one screen
        if error.ename == "NameError":
            # A test of the trained model, whose training cell could not run on blank
            # exercises: Python's own one-line message names the missing model.
            assert lines[-1].startswith("NameError: name '"), lines
            continue
        assert error.ename == "CheckFailure", (grade_id, error.ename)
        if "not implemented yet" not in error.evalue:  # a quality check on an untrained model
            assert error.evalue.startswith(tuple(f"{e}: " for e in QUALITY_CHECKS)), \
                error.evalue
            continue
        # Usually the exercise above the test; a test may check an earlier exercise first.
        assert error.evalue.split(":")[0] in exercises(notebook), error.evalue
        assert exercise in exercises(notebook)
        # The blank body raised in the student's own cell: that frame may show, ours never.
        assert lines[-1] == f"CheckFailure: {error.evalue.splitlines()[0]}", lines
        assert "Traceback (your code):" in lines and "    raise NotImplementedError()" in lines


def test_a_recognised_mistake_shows_case_expected_received_and_hint(tmp_path):
    notebook = nbformat.read(notebook_path("00_welcome", "blank"), as_version=4)
    cell = next(c for c in notebook.cells if nbgrader_info(c).get("grade_id") == "to_chw_float")
    blank = "    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert blank in cell.source
    # The classic mistake: the right layout, but the values are left in 0..255.
    cell.source = cell.source.replace(blank, "    return torch.from_numpy(image)"
                                             ".permute(2, 0, 1).float()")
    path = tmp_path / "00_welcome.ipynb"
    nbformat.write(notebook, path)
    result = selfcheck.check(path, cell_timeout=CELL_TIMEOUT)

    test = next(c for _, g, c in graded_tests(result.executed) if g == "test_to_chw_float")
    [error] = [o for o in test.outputs if o.output_type == "error"]
    lines = shown(error)
    assert lines[0].startswith("CheckFailure: to_chw_float: the output has the right shape but "
                               "wrong values"), lines
    assert re.search(r"\(expected [\d.]+, got 25\d", lines[0]), lines[0]
    assert lines[1].startswith("  case: a ") and "RGB image" in lines[1], lines
    assert lines[2] == "  Hint: values must lie in [0, 1]: divide the uint8 values by 255.", lines
    assert len(lines) == 3  # the student's code raised nothing: no traceback at all
    row = next(r for r in result.rows if r.grade_id == "test_to_chw_float")
    assert row.score == 0 and row.note == lines[0].removeprefix("CheckFailure: ")
    assert "\n".join(lines) in (ROOT / "README.md").read_text()  # its sample is this output


PASS_LINE = re.compile(r"✓ (\w+): \d+ cases passed on cpu( and cuda)? "
                       r"\(values(, gradients)?(, input validation)?\)")


def test_a_passing_check_prints_one_line_saying_what_it_checked():
    notebook = report("00_welcome", "solution").executed
    for exercise, grade_id, cell in graded_tests(notebook):
        printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert [o.output_type for o in cell.outputs] == ["stream"], grade_id
        [line] = printed.splitlines()
        match = PASS_LINE.fullmatch(line)
        assert match and match.group(1) == exercise, line
        if exercise == "rgb_to_grayscale":  # the README's sample is this output (on a CPU)
            assert line.replace(" and cuda", "") in (ROOT / "README.md").read_text()
