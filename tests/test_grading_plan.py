"""What the grader reads from notebooks: the re-check plan, the restored submission, the
submissions' layout (course_utils.tools.grading.plan, .sanitize, .batch)."""

from __future__ import annotations

import copy
import json
import sys
import types

import nbformat
import pytest
import torch

from course_utils.checks.case import Case
from course_utils.checks.core import QualityCheck
from course_utils.tools.grading import plan, sanitize
from course_utils.tools.grading.course import discover, student_id
from course_utils.tools.grading.nbgrader import make_course
from tests.notebook_code import ROOT, solution_notebook

NAME = "00_welcome"


def test_the_plan_of_00_welcome_lists_every_check_call_in_notebook_order():
    built = plan.build(solution_notebook(NAME), NAME)
    assert built.problems == []
    assert built.points == {"test_to_chw_float": 2.0, "test_rgb_to_grayscale": 2.0}
    assert [(s.kind, s.grade_id) for s in built.steps] == [
        ("cell", "setup"), ("solution", "to_chw_float"), ("test", "test_to_chw_float"),
        ("solution", "rgb_to_grayscale"), ("test", "test_rgb_to_grayscale")]
    calls = built.test_calls("test_to_chw_float")
    assert [(c.target, c.kind, c.argument, c.seed, c.hidden_cases, c.hidden) for c in calls] == [
        ("course_utils.checks.welcome.to_chw_float", "check", "to_chw_float", 0, False, False),
        ("course_utils.checks.welcome.to_chw_float", "check", "to_chw_float", 2026, True, True)]


@pytest.fixture
def fake_checks(monkeypatch):
    """A checks module with a QualityCheck, as a training notebook's would have."""
    module = types.ModuleType("course_utils.checks.fake_topic")

    def cases(generator, hidden):
        x = torch.rand(4, 2, generator=generator)
        return [Case("held-out points", {"x": x}, private={"labels": (x[:, 0] > 0.5).long()})]

    module.accuracy = QualityCheck(
        exercise="accuracy", cases=cases, run=lambda model, case: {"output": model(
            case.inputs["x"])},
        score=lambda case, out: {"accuracy": float((out["output"].argmax(1) == case.private[
            "labels"]).float().mean())}, thresholds={"accuracy": 0.75})
    monkeypatch.setitem(sys.modules, "course_utils.checks.fake_topic", module)
    return module


SETUP = "from course_utils.checks import fake_topic as checks\nfrom course_utils import checks as c"


@pytest.mark.parametrize("source, problem", [
    ("assert model is not None", "is not a check call"),
    ("score = checks.accuracy(model)", "is not a check call"),
    ("print('ok')", "does not call a check imported in a locked cell"),
    ("checks.accuracy(model, seed=SEED)", "seed must be a literal"),
    ("checks.accuracy(model, **options)", "**kwargs are not allowed"),
    ("checks.accuracy(model, other)", "one positional argument"),
    ("checks.missing(model)", "cannot find"),
    ("c.at_least('accuracy', accuracy)", "needs (name, value, minimum)"),
    ("c.Case(model)", "is not a Check, a QualityCheck or at_least"),
    ("# only a comment", "no check call"),
])
def test_test_cells_that_cannot_be_rechecked_are_reported(fake_checks, source, problem):
    _, problems = plan.parse_test_cell("test_x", source, plan.imports([SETUP]))
    assert len(problems) == 1 and problem in problems[0]


def test_a_test_that_uses_what_an_unlocked_cell_computes_is_reported(fake_checks):
    def cell(source, **info):
        metadata = {"nbgrader": {"schema_version": 3, "grade": False, "solution": False,
                                 "locked": False, **info}}
        return nbformat.v4.new_code_cell(source, metadata=metadata)

    notebook = nbformat.v4.new_notebook(cells=[
        cell(SETUP, grade_id="setup", locked=True),
        cell("class Model:\n    pass", grade_id="model", solution=True),
        nbformat.v4.new_code_cell("model = Model()\naccuracy = 0.97  # an unlocked cell"),
        cell("checks.accuracy(model)\nc.at_least('accuracy', accuracy, 0.9)",
             grade_id="test_model", grade=True, locked=True, points=1)])
    problems = plan.build(notebook, "x").problems
    assert len(problems) == 2 and all("make the cell that defines it read-only" in p
                                      for p in problems)
    notebook.cells[2].metadata["nbgrader"] = {"grade": False, "solution": False, "locked": True,
                                              "grade_id": "train_model", "schema_version": 3}
    assert plan.build(notebook, "x").problems == []


def test_quality_checks_and_at_least_calls_are_planned(fake_checks):
    source = ("# The model's held-out accuracy.\nchecks.accuracy(model)\n"
              "c.at_least('loss', final_loss, 0.1, hint='train longer', unit='')\n"
              "### BEGIN HIDDEN TESTS\nchecks.accuracy(model, seed=2026, hidden=True)\n"
              "### END HIDDEN TESTS")
    calls, problems = plan.parse_test_cell("test_model", source, plan.imports([SETUP]))
    assert problems == []
    assert [(c.kind, c.argument, c.hidden) for c in calls] == [
        ("quality", "model", False), ("at_least", "final_loss", False), ("quality", "model", True)]
    assert dict(calls[1].options) == {"name": "loss", "minimum": 0.1, "hint": "train longer",
                                      "unit": ""}


# --- reading and restoring submissions -----------------------------------------------------------


def test_only_regular_valid_notebooks_are_read(tmp_path):
    assert sanitize.load(None).reason == "missing_notebook"
    assert sanitize.load(tmp_path / "nothing.ipynb").reason == "missing_notebook"
    good = tmp_path / "good.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), good)
    assert sanitize.load(good).notebook is not None
    (tmp_path / "link.ipynb").symlink_to(good)
    (tmp_path / "bad.ipynb").write_text("{oops")
    (tmp_path / "old.ipynb").write_text(json.dumps({"nbformat": 3, "cells": []}))
    (tmp_path / "folder.ipynb").mkdir()
    for name in ("link", "bad", "old", "folder"):
        loaded = sanitize.load(tmp_path / f"{name}.ipynb")
        assert loaded.notebook is None and loaded.reason == "invalid_notebook", name
    assert "larger than" in sanitize.load(good, max_bytes=10).detail


@pytest.fixture(scope="module")
def assignment(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("plan") / "course", ROOT, [NAME])
    source = nbformat.read(course / "solutions" / NAME / f"{NAME}.ipynb", as_version=4)
    release = nbformat.read(course / "notebooks" / NAME / f"{NAME}.ipynb", as_version=4)
    return sanitize.Assignment(NAME, source, release, f"sqlite:///{course / 'gradebook.db'}")


def cell_of(notebook, grade_id):
    return next(c for c in notebook.cells if plan.nbgrader_info(c).get("grade_id") == grade_id)


def restored(assignment, edit):
    notebook = copy.deepcopy(assignment.release)
    edit(notebook)
    return sanitize.restore(sanitize.normalise(json.loads(nbformat.writes(notebook))),
                            assignment, "student")


def check_instructor_cells(result, assignment):
    """Every test and read-only cell is the instructor's, without hidden tests."""
    ids = [plan.nbgrader_info(c).get("grade_id") for c in result.notebook.cells]
    for grade_id in ("setup", "test_to_chw_float", "test_rgb_to_grayscale"):
        assert ids.count(grade_id) == 1, grade_id
        cell = cell_of(result.notebook, grade_id)
        assert cell.cell_type == "code"
        assert cell.source.endswith(cell_of(assignment.release, grade_id).source)
        assert plan.nbgrader_info(cell)["points" if grade_id != "setup" else "locked"] == \
            plan.nbgrader_info(cell_of(assignment.release, grade_id))[
                "points" if grade_id != "setup" else "locked"]
    text = nbformat.writes(result.notebook)
    assert "HIDDEN TESTS" not in text and "seed=2026" not in text


def test_an_untouched_notebook_needs_no_restoring(assignment):
    result = restored(assignment, lambda nb: None)
    assert result.changes == [] and not result.rebuilt
    check_instructor_cells(result, assignment)


def delete(grade_id):
    return lambda nb: nb.cells.remove(cell_of(nb, grade_id))


def duplicate(nb):
    cell = copy.deepcopy(cell_of(nb, "test_to_chw_float"))
    cell.id = "my-copy"
    nb.cells.append(cell)


def edit(nb):
    cell_of(nb, "test_to_chw_float").source = "pass"


def retype(nb):
    cell = cell_of(nb, "test_to_chw_float")
    nb.cells[nb.cells.index(cell)] = nbformat.v4.new_markdown_cell(cell.source,
                                                                   metadata=cell.metadata)


def points(nb):
    cell_of(nb, "test_to_chw_float").metadata.nbgrader.update(points=100, checksum="0" * 32)


def impostor(nb):
    nb.cells.append(nbformat.v4.new_code_cell("pass", metadata={"nbgrader": {
        "grade": True, "grade_id": "bonus", "points": 50, "locked": True, "solution": False,
        "schema_version": 3}}))


def garbage_metadata(nb):
    cell_of(nb, "test_rgb_to_grayscale").metadata["nbgrader"] = {"grade_id": 7, "points": "x"}


@pytest.mark.parametrize("change, expected", [
    (delete("test_to_chw_float"), "test_to_chw_float: deleted"),
    (delete("setup"), "setup: deleted"),
    (duplicate, "test_to_chw_float: duplicated (2 copies)"),
    (edit, "test_to_chw_float: edited"),
    (retype, "test_to_chw_float: retyped from code to markdown"),
    (points, "test_to_chw_float: its points was changed from 2 to 100"),
    (points, "test_to_chw_float: its checksum was changed"),
    (impostor, "a cell claimed to be 'bonus'"),
    (garbage_metadata, "a cell claimed to be 7"),
])
def test_edited_test_and_read_only_cells_are_restored_and_reported(assignment, change,
                                                                   expected):
    result = restored(assignment, change)
    assert any(expected in c for c in result.changes), result.changes
    check_instructor_cells(result, assignment)
    assert "bonus" not in json.dumps([c.metadata for c in result.notebook.cells])


def test_a_notebook_nbgrader_cannot_sanitize_is_rebuilt_from_the_release(assignment,
                                                                         monkeypatch):
    def broken(*args):
        raise RuntimeError("mangled")

    monkeypatch.setattr(sanitize, "_nbgrader_sanitize", broken)
    result = restored(assignment, lambda nb: setattr(cell_of(nb, "to_chw_float"), "source",
                                                     "def to_chw_float(image):\n    return 1"))
    assert result.rebuilt and "rebuilt" in result.changes[-1]
    assert result.solutions()["to_chw_float"].endswith("return 1")
    check_instructor_cells(result, assignment)


# --- finding submissions -------------------------------------------------------------------------


def test_submissions_are_found_in_nbgrader_layout_and_in_flat_folders(tmp_path):
    nested = tmp_path / "submitted"
    (nested / "alice" / NAME).mkdir(parents=True)
    (nested / "alice" / NAME / f"{NAME}.ipynb").write_text("{}")
    (nested / "bob" / NAME).mkdir(parents=True)
    (nested / "bob" / NAME / f"{NAME} (1).ipynb").write_text("{}")
    (nested / "carol" / "01_other").mkdir(parents=True)
    entries, _ = discover(nested, [NAME, "01_other"], [NAME])
    assert [(e.student, e.notebook is not None) for e in entries] == [("alice", True),
                                                                      ("bob", False)]
    assert "found 00_welcome (1).ipynb instead" in entries[1].note

    flat = tmp_path / "export"
    flat.mkdir()
    for name in ("Ann Lee.ipynb", "Ann_Lee.ipynb", "../x.ipynb", "notes.txt"):
        (flat / name.replace("../", "")).write_text("{}")
    entries, warnings = discover(flat, [NAME], [NAME])
    assert [e.student for e in entries] == ["Ann_Lee", "Ann_Lee-2", "x"]
    assert any("notes.txt" in w for w in warnings)
    with pytest.raises(ValueError, match="--assignment"):
        discover(flat, [NAME, "01_other"], None)
    assert student_id("../../etc") == "etc" and student_id("a/b c") == "a_b_c"


def test_flat_submissions_are_copied_into_the_course_but_links_are_not(tmp_path):
    from course_utils.tools.grading.course import Entry, copy_submission

    course, export = tmp_path / "course", tmp_path / "export"
    export.mkdir()
    (export / "alice.ipynb").write_text('{"cells": []}')
    (export / "eve.ipynb").symlink_to(tmp_path / "secret.ipynb")
    alice = copy_submission(Entry(NAME, "alice", export / "alice.ipynb", None), course)
    assert alice.notebook == course / "submitted" / "alice" / NAME / f"{NAME}.ipynb"
    assert alice.notebook.read_text() == '{"cells": []}' and not alice.notebook.is_symlink()
    eve = copy_submission(Entry(NAME, "eve", export / "eve.ipynb", None), course)
    assert eve.notebook == export / "eve.ipynb"  # left where it is: sanitize.load refuses it
    assert not (course / "submitted" / "eve" / NAME / f"{NAME}.ipynb").exists()


def test_an_assignment_whose_tests_cannot_be_rechecked_is_not_graded(tmp_path, monkeypatch,
                                                                     capsys):
    from course_utils.tools.grading import batch
    from course_utils.tools.grading.sandbox import Sandbox

    course = tmp_path / "course"
    (course / "solutions" / "99_bad").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text((ROOT / "nbgrader_config.py").read_text())
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "assert 1 + 1 == 2", metadata={"nbgrader": {"grade": True, "grade_id": "test_sum",
                                                    "locked": True, "points": 1,
                                                    "solution": False, "schema_version": 3}})])
    nbformat.write(notebook, course / "solutions" / "99_bad" / "99_bad.ipynb")
    (course / "submitted" / "alice" / "99_bad").mkdir(parents=True)
    nbformat.write(notebook, course / "submitted" / "alice" / "99_bad" / "99_bad.ipynb")
    monkeypatch.setattr(batch.Sandbox, "detect", classmethod(lambda cls, **kw: Sandbox(None)))
    code = batch.main(batch.Options(course / "submitted", course=course, progress=False))
    out = capsys.readouterr().out
    assert code == 2 and "99_bad: its test cells cannot be re-checked" in out
    assert "test cell test_sum, line 1: `assert 1 + 1 == 2` is not a check call" in out
    assert not (course / "gradebook.db").exists()  # nothing was recorded


def test_a_check_name_resolves_to_the_check_not_to_its_file():
    """A check package re-exports each check from a file that may bear its name
    (``diffusion/q_sample.py`` defines ``q_sample``): the grader must find the check."""
    from course_utils.checks.core import Check
    from course_utils.tools.grading.plan import resolve

    assert isinstance(resolve("course_utils.checks.diffusion.q_sample"), Check)
    assert isinstance(resolve("course_utils.checks.welcome.to_chw_float"), Check)
    with pytest.raises(ImportError, match="cannot import"):
        resolve("course_utils.checks.no_such_notebook.check")
