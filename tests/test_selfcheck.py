"""``python -m course_utils check``: a notebook scored without nbgrader, as nbgrader scores it.

The released solution scores full marks, the blank student notebook 0, and every graded cell's
score is the one the real nbgrader pipeline (generate, submit, autograde) gives the same file.
Notebook 03's solution trains for minutes on a small CPU, so only its blank notebook is used.
"""

from __future__ import annotations

import nbformat
import pytest

from course_utils.tools import cli, selfcheck
from course_utils.tools.grading.nbgrader import autograde, grades, make_course, submit
from tests.notebook_code import ROOT
from tests.selfchecked import CELL_TIMEOUT, notebook_path, report

pytestmark = pytest.mark.notebook

RUNS = [("00_welcome", "solution"), ("00_welcome", "blank"),
        ("03_similarity_contrastive", "blank")]


@pytest.fixture(scope="module")
def nbgrader_grades(tmp_path_factory):
    """name -> kind -> grade_id -> CellGrade, one nbgrader course per assignment."""
    cache: dict[str, dict] = {}

    def grades_of(name: str) -> dict:
        if name not in cache:
            course = make_course(tmp_path_factory.mktemp(name), ROOT, [name])
            kinds = [kind for n, kind in RUNS if n == name]
            for kind in kinds:
                submit(course, name, kind, notebook_path(name, kind))
            autograde(course, name)
            cache[name] = {kind: grades(course, name, kind) for kind in kinds}
        return cache[name]

    return grades_of


@pytest.mark.parametrize("name", ["00_welcome"])
def test_solution_scores_full_marks(name):
    result = report(name, "solution")
    assert result.tests, f"{name} has no test cells"
    assert [(r.grade_id, r.score) for r in result.tests if r.score != r.max_score] == []
    assert result.score == result.max_score > 0
    answers = [r for r in result.rows if r.kind == "answer"]
    assert answers and all(r.score is None and r.note == "graded by hand" for r in answers)
    assert all(r.note.startswith("✓ ") for r in result.tests)  # what each test checked
    assert result.errors == []  # it runs top to bottom


@pytest.mark.parametrize("name", ["00_welcome", "03_similarity_contrastive"])
def test_blank_notebook_scores_zero(name):
    result = report(name, "blank")
    assert result.tests and result.score == 0
    assert {r.grade_id: r.score for r in result.rows if r.score != 0} == {}
    for row in result.tests:  # each names its exercise and says what to do
        assert "not implemented yet" in row.note, row


@pytest.mark.parametrize(("name", "kind"), RUNS)
def test_scores_match_nbgrader(name, kind, nbgrader_grades):
    expected = nbgrader_grades(name)[kind]
    rows = {row.grade_id: row for row in report(name, kind).rows}
    assert rows.keys() == expected.keys()
    for grade_id, grade in expected.items():
        row = rows[grade_id]
        assert (row.kind, row.max_score) == (grade.kind, grade.max_score), grade_id
        if grade.needs_manual_grade:
            assert row.score is None, grade_id
        else:
            assert row.score == grade.score, grade_id


def test_the_table_shows_every_cell_and_the_total():
    result = report("00_welcome", "blank")
    text = selfcheck.table(result)
    for row in result.rows:
        assert row.grade_id in text
    assert "autograded: 0 of 4 points; written answers (2 points) are graded by hand" in text
    assert "The first failing test says:\n  to_chw_float: not implemented yet" in text
    assert "Traceback" not in text


def test_hidden_tests_do_not_run():
    notebook = nbformat.read(notebook_path("00_welcome", "solution"), as_version=4)
    assert any("BEGIN HIDDEN TESTS" in cell.source for cell in notebook.cells)
    visible = selfcheck.visible_tests_only(notebook)
    assert not any("HIDDEN" in cell.source or "hidden=True" in cell.source
                   for cell in visible.cells)
    executed = report("00_welcome", "solution").executed
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "hidden cases passed" not in printed


def test_a_dead_kernel_scores_the_cells_it_did_not_run_zero(tmp_path):
    notebook = nbformat.read(notebook_path("00_welcome", "solution"), as_version=4)
    first_test = next(i for i, c in enumerate(notebook.cells)
                      if c.metadata.get("nbgrader", {}).get("grade_id") == "test_to_chw_float")
    notebook.cells.insert(first_test, nbformat.v4.new_code_cell("import os\nos._exit(1)"))
    path = tmp_path / "00_welcome.ipynb"
    nbformat.write(notebook, path)
    result = selfcheck.check(path, cell_timeout=CELL_TIMEOUT)
    assert result.score == 0 and result.max_score == 4
    assert all("the kernel stopped" in row.note for row in result.tests)


def test_a_lesson_cell_that_raises_is_reported_and_fails_the_check(tmp_path, monkeypatch,
                                                                    capsys):
    notebook = nbformat.read(notebook_path("00_welcome", "solution"), as_version=4)
    last_test = max(i for i, c in enumerate(notebook.cells)
                    if c.metadata.get("nbgrader", {}).get("grade", False))
    notebook.cells.insert(last_test, nbformat.v4.new_code_cell(
        "# a picture of the result\nshown = rgb_to_grayscale.num_patches"))
    path = tmp_path / "00_welcome.ipynb"
    nbformat.write(notebook, path)
    result = selfcheck.check(path, cell_timeout=CELL_TIMEOUT)
    assert result.score == result.max_score  # every test passes...
    assert [(e.first_line, e.error.split(":")[0]) for e in result.errors] == [
        ("shown = rgb_to_grayscale.num_patches", "AttributeError")]  # ...but one cell raised
    number = sum(c.cell_type == "code" for c in notebook.cells[:last_test + 1])
    assert result.errors[0].number == number
    text = selfcheck.table(result)
    assert "does not run top to bottom: 1 other cell(s) raised an error" in text
    assert f"code cell {number} (shown = rgb_to_grayscale.num_patches): AttributeError" in text
    monkeypatch.setattr(selfcheck, "check", lambda path, timeout: result)
    assert cli.main(["check", str(path)]) == 1
    blank = report("00_welcome", "blank")  # a blank notebook's try-it cells raise too
    assert any("NotImplementedError" in e.error for e in blank.errors)


def test_command_line(capsys, tmp_path, monkeypatch):
    assert cli.main(["check", str(tmp_path / "missing.ipynb")]) == 2
    assert "no notebook at" in capsys.readouterr().out
    for kind, code in [("blank", 1), ("solution", 0)]:  # the runs above, not new ones
        monkeypatch.setattr(selfcheck, "check", lambda path, timeout, k=kind:
                            report("00_welcome", k))
        assert cli.main(["check", str(notebook_path("00_welcome", kind))]) == code
        assert selfcheck.table(report("00_welcome", kind)) in capsys.readouterr().out
    args = cli.parser().parse_args(["check", "notebooks/00_welcome/00_welcome.ipynb",
                                    "--cell-timeout", "60"])
    assert (args.command, args.notebook.name, args.cell_timeout) == (
        "check", "00_welcome.ipynb", 60.0)
