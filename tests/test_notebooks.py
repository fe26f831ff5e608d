"""The committed notebooks: built from their sources, clean, and shaped like the template."""

from __future__ import annotations

import ast
import re

import nbformat
import pytest

import course_utils
from course_utils.tools.release import stale
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
    """Every notebook has the template's anatomy (CONTRIBUTING.md, "The anatomy")."""

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
        cells = solution_notebook(name).cells
        for i, cell in enumerate(cells):
            if cell in answers:  # the student notebook shows "YOUR ANSWER HERE" in its place
                question = cells[i - 1]
                assert question.cell_type == "markdown" and not nbgrader(question), \
                    f"{nbgrader(cell)['grade_id']}: the question goes in its own markdown " \
                    "cell just above the answer cell, which release empties"

    def test_experiments_predict_run_explain(self, name):
        """Every lesson 01–07 has an experiment: a prediction cell the student fills
        in, an unlocked cell with a knob, then a graded explanation (or an autograded check)."""
        if name == "00_welcome":
            pytest.skip("00 has no experiment: it sets up the tools")
        cells = solution_notebook(name).cells
        tagged = [i for i, c in enumerate(cells) if "experiment" in c.metadata.get("tags", [])]
        assert tagged, "at least one cell tagged 'experiment'"
        for i in tagged:
            cell = cells[i]
            assert cell.cell_type == "code" and not nbgrader(cell), \
                f"experiment cell {i}: an unlocked code cell without nbgrader metadata"
            assert "fork_rng(" in cell.source, \
                f"experiment cell {i}: run under torch.random.fork_rng() so that the cells " \
                "after it draw the same random numbers whatever the knob says"
            before = [c for c in cells[:i] if c.cell_type == "markdown"][-3:]
            assert any("predict" in c.metadata.get("tags", []) for c in before), \
                f"experiment cell {i}: a 'predict' markdown cell comes just before it"
            graded = [c for c in cells[i + 1:] if nbgrader(c).get("grade")]
            assert graded, f"experiment cell {i}: a graded explanation or check follows it"

    def test_experiment_cells_feed_no_other_cell(self, name):
        """What a student sets in an experiment cell changes nothing outside it: no later cell
        (graded, locked or not) reads a name an experiment cell binds."""
        from course_utils.tools.grading.replay import names

        cells = [c for c in solution_notebook(name).cells if c.cell_type == "code"]
        bound_by_experiments: dict[str, int] = {}
        for i, cell in enumerate(cells):
            binds, reads = names(cell.source)
            if "experiment" in cell.metadata.get("tags", []):
                bound_by_experiments.update({n: i for n in binds})
                continue
            leaked = reads & set(bound_by_experiments)
            assert not leaked, f"code cell {i} reads {sorted(leaked)}, bound by an experiment"
            rebound = binds & set(bound_by_experiments)
            for n in rebound:
                del bound_by_experiments[n]  # bound afresh: later reads see this cell's value

    def test_the_recheck_never_runs_an_experiment_cell(self, name):
        """The grader's re-check replays a student's cell when graded code reads a name it
        binds, wherever it stands (``grading/replay.py``); an experiment cell must never be one
        of them, so its knob cannot change a score."""
        from course_utils.tools.grading import replay
        from course_utils.tools.grading.plan import build

        path = ROOT / "solutions" / name / f"{name}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        experiments = {c.source for c in notebook.cells
                       if "experiment" in c.metadata.get("tags", [])}
        replayed = [s.grade_id for s in replay.steps(build(path, name), notebook)
                    if s.source in experiments]
        assert replayed == [], f"the re-check would run experiment cells {replayed}"

    def test_lesson_functions_read_no_notebook_variable(self, name):
        """STYLE.md, "Nothing hidden across cells": a function or class the lesson defines
        receives what it uses. It may read modules, functions, classes and UPPER_CASE
        constants of the notebook, never a variable such as ``device`` or ``model``."""
        import symtable

        from course_utils.tools.grading.replay import python_source

        tables = [symtable.symtable(code, "<cell>", "exec")
                  for c in solution_notebook(name).cells if c.cell_type == "code"
                  if (code := python_source(c.source)) is not None]
        variables = {s.get_name() for t in tables for s in t.get_symbols()
                     if s.is_assigned() and not (s.is_imported() or s.is_namespace())}
        found = []
        for table in tables:
            todo = [t for t in table.get_children() if t.get_type() in ("function", "class")
                    and t.get_name() != "lambda" and not t.get_name().endswith("comp")
                    and t.get_name() != "genexpr"]
            while todo:
                scope = todo.pop()
                todo.extend(scope.get_children())
                found += [f"{scope.get_name()} reads {s.get_name()}"
                          for s in scope.get_symbols() if s.is_referenced() and s.is_global()
                          and s.get_name() in variables and not s.get_name().isupper()]
        assert found == [], "pass these as arguments (or a config): " + "; ".join(found)

    def test_written_work_is_about_a_quarter_of_the_points(self, name):
        """Two questions answered in words in each lesson 01–07, worth about a quarter
        of the notebook's points."""
        if name == "00_welcome":
            pytest.skip("00 has one written question")
        cells = solution_notebook(name).cells
        written = [nbgrader(c)["points"] for c in cells
                   if c.cell_type == "markdown" and nbgrader(c).get("grade")]
        total = sum(nbgrader(c).get("points", 0) for c in cells if nbgrader(c).get("grade"))
        assert len(written) >= 2, "at least two written questions"
        assert 0.2 <= sum(written) / total <= 0.35, \
            f"written work is {sum(written)} of {total} points"

    def test_closing_section(self, name):
        headings = [c.source for c in solution_notebook(name).cells if c.cell_type == "markdown"
                    and c.source.startswith("## ")]
        assert headings and headings[-1].startswith("## What you built"), \
            "the last section is '## What you built ...' (mapping to real systems, reading)"

    def test_the_grader_can_recheck_every_test_cell(self, name):
        """docs/instructors.md, "Rules for notebook authors": what each test cell grades
        comes from the set-up, read-only and exercise cells only."""
        from course_utils.tools.grading.plan import build

        plan = build(ROOT / "solutions" / name / f"{name}.ipynb", name)
        assert plan.problems == []

    def test_no_grading_mode_switches_and_no_downloads(self, name):
        source = (ROOT / "solutions" / name / f"{name}.py").read_text()
        assert "NBGRADER" not in source
        for call in ("urlretrieve", "requests.get", "wget ", "curl "):
            assert call not in source
