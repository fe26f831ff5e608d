"""Every notebook through the real nbgrader pipeline: generate, submit, autograde.

For each assignment: the solution notebook, run top to bottom by nbgrader (nbclient), must
raise no error in any cell and score full marks on every autograded cell; the untouched
student notebook must score 0 without stopping the run. Later notebooks are covered as soon
as their sources exist.
"""

from __future__ import annotations

import nbformat
import pytest

from course_utils.tools.grading.nbgrader import autograde, grades, make_course, submit
from tests.notebook_code import ROOT, assignments

pytestmark = pytest.mark.notebook


def error_outputs(notebook_path) -> list[str]:
    notebook = nbformat.read(notebook_path, as_version=4)
    return [
        f"cell {i} ({cell.metadata.get('nbgrader', {}).get('grade_id', 'ungraded')}): "
        f"{output.get('ename')}: {output.get('evalue')}"
        for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
        for output in cell.get("outputs", []) if output.get("output_type") == "error"
    ]


@pytest.mark.parametrize("name", assignments())
def test_solution_runs_without_errors_and_scores_full_marks(name, tmp_path):
    course = make_course(tmp_path / "course", ROOT, [name])
    submit(course, name, "solution", course / "solutions" / name / f"{name}.ipynb")
    autograde(course, name)

    assert error_outputs(course / "autograded" / "solution" / name / f"{name}.ipynb") == []
    cells = grades(course, name, "solution")
    tests = {k: g for k, g in cells.items() if g.kind == "test"}
    assert tests, f"{name} has no autograded test cells"
    lost = {k: f"{g.score}/{g.max_score}" for k, g in tests.items() if g.score != g.max_score}
    assert lost == {}, f"the solution lost points in {lost}"
    answers = [g for g in cells.values() if g.kind == "answer"]
    assert answers, f"{name} has no written question graded by hand"
    assert all(g.needs_manual_grade for g in answers)


@pytest.mark.parametrize("name", assignments())
def test_blank_student_notebook_scores_zero(name, tmp_path):
    course = make_course(tmp_path / "course", ROOT, [name])
    submit(course, name, "blank", course / "notebooks" / name / f"{name}.ipynb")
    autograde(course, name)  # must not crash

    cells = grades(course, name, "blank")
    assert {k: g.score for k, g in cells.items() if g.score != 0} == {}
    assert not any(g.needs_manual_grade for g in cells.values())  # blank answers score 0
    failed = error_outputs(course / "autograded" / "blank" / name / f"{name}.ipynb")
    tests = [k for k, g in cells.items() if g.kind == "test"]
    assert all(any(f"({k})" in f for f in failed) for k in tests)
