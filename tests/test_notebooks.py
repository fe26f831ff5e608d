"""The committed notebooks: built from their sources, clean, and shaped like the template."""

from __future__ import annotations

import ast
import re

import nbformat
import pytest

import course_utils
from course_utils.release import stale
from tests.notebook_code import ROOT, assignments, solution_notebook

NAMES = assignments()
COMMITTED = sorted(ROOT.glob("solutions/*/*.ipynb")) + sorted(ROOT.glob("notebooks/*/*.ipynb"))


def nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def test_every_lesson_has_a_source_a_solution_and_a_student_notebook():
    assert "00_welcome" in NAMES
    for name in NAMES:
        assert (ROOT / "solutions" / name / f"{name}.ipynb").is_file()
        assert (ROOT / "notebooks" / name / f"{name}.ipynb").is_file()


def test_notebooks_are_exactly_what_release_makes_from_the_sources():
    problems = stale(ROOT)
    assert problems == [], "run `python -m course_utils release`: " + "; ".join(problems)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_notebooks_carry_no_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
             and (cell.outputs or cell.execution_count is not None)]
    assert dirty == [], f"cells {dirty} have outputs or execution counts"


def test_the_repository_url_is_named_consistently():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'Repository = "{course_utils.REPOSITORY_URL}"' in pyproject
    readme = (ROOT / "README.md").read_text()
    assert course_utils.REPOSITORY_URL in readme


@pytest.mark.parametrize("name", NAMES)
class TestAnatomy:
    """COURSE_SPEC §3: every notebook has the template's anatomy."""

    def test_title_badge_goals_time_prerequisites(self, name):
        first = solution_notebook(name).cells[0]
        assert first.cell_type == "markdown"
        assert re.match(rf"# {name[:2]} · \S", first.source), "title: '# NN · Title'"
        org_repo = course_utils.REPOSITORY_URL.removeprefix("https://github.com/")
        badge = (f"https://colab.research.google.com/github/{org_repo}/blob/main/"
                 f"notebooks/{name}/{name}.ipynb")
        assert badge in first.source, f"the Open in Colab badge must link {badge}"
        for words in ("You will learn", "Time", "Prerequisites"):
            assert f"**{words}" in first.source, f"the first cell needs **{words}**"

    def test_setup_cell_installs_on_colab_picks_the_device_and_seeds(self, name):
        cells = [c for c in solution_notebook(name).cells if nbgrader(c).get("grade_id") == "setup"]
        assert len(cells) == 1, "one set-up cell with grade_id 'setup'"
        setup = cells[0]
        assert nbgrader(setup)["locked"] and not nbgrader(setup)["grade"]
        assert f"git+{course_utils.REPOSITORY_URL}" in setup.source
        assert "google.colab" in setup.source
        assert "get_device()" in setup.source and "seed_everything(" in setup.source
        assert "from course_utils.checks import" in setup.source

    def test_exercises_have_tests_with_hidden_cases(self, name):
        cells = solution_notebook(name).cells
        exercises = [c for c in cells if c.cell_type == "code" and nbgrader(c).get("solution")]
        tests = [c for c in cells if c.cell_type == "code" and nbgrader(c).get("grade")]
        assert exercises and tests
        for exercise in exercises:
            assert "### BEGIN SOLUTION" in exercise.source and "### END SOLUTION" in exercise.source
        for test in tests:
            grade_id = nbgrader(test)["grade_id"]
            assert nbgrader(test)["locked"] and nbgrader(test)["points"] > 0
            assert test.source.startswith("# "), f"{grade_id}: open with a comment line"
            assert "### BEGIN HIDDEN TESTS" in test.source, f"{grade_id}: no hidden tests"
            tree = ast.parse(test.source.replace("### ", "# "))
            last = tree.body[-1] if tree.body else None
            assert not (isinstance(last, ast.Expr) and isinstance(last.value, ast.Constant)
                        and isinstance(last.value.value, int | float)), \
                f"{grade_id}: a number as the last expression reads as partial credit"
            for word in ("tqdm", "warnings.warn", "sys.stderr", ".train("):
                assert word not in test.source, f"{grade_id}: {word} in a test cell"

    def test_a_written_question_graded_by_hand(self, name):
        answers = [c for c in solution_notebook(name).cells if c.cell_type == "markdown"
                   and nbgrader(c).get("grade") and nbgrader(c).get("solution")]
        assert answers, "at least one manually graded answer cell"
        assert all(nbgrader(c)["points"] > 0 for c in answers)

    def test_closing_section(self, name):
        headings = [c.source for c in solution_notebook(name).cells if c.cell_type == "markdown"
                    and c.source.startswith("## ")]
        assert headings and headings[-1].startswith("## What you built"), \
            "the last section is '## What you built ...' (mapping to real systems, reading)"

    def test_the_grader_can_recheck_every_test_cell(self, name):
        """docs/instructors.md, "Rules for notebook authors": what each test cell grades
        comes from the set-up, read-only and exercise cells only."""
        from course_utils.grading.plan import build

        plan = build(ROOT / "solutions" / name / f"{name}.ipynb", name)
        assert plan.problems == []

    def test_no_grading_mode_switches_and_no_downloads(self, name):
        source = (ROOT / "solutions" / name / f"{name}.py").read_text()
        assert "NBGRADER" not in source
        for call in ("urlretrieve", "requests.get", "wget ", "curl "):
            assert call not in source
