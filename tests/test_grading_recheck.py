"""The authoritative re-check: the runner's answers, judged by the trusted side
(course_utils.tools.grading.recheck and runner). The runner runs here without bubblewrap
(``Sandbox(None)``, as ``--unsafe`` does); test_grading_sandbox.py tests the jail itself."""

from __future__ import annotations

import json
import math
import textwrap
import time

import nbformat
import pytest
import torch

from course_utils.checks import welcome
from course_utils.checks.runners import run_function
from course_utils.tools.grading import plan as plans
from course_utils.tools.grading import recheck
from course_utils.tools.grading.jail import Jail
from course_utils.tools.grading.reference import Reference
from course_utils.tools.grading.sandbox import Limits, Sandbox
from tests.notebook_code import solution_notebook

NAME = "00_welcome"

QUALITY_MODULE = '''
"""A checks module like a training notebook's: a QualityCheck on a trained model."""
import torch

from course_utils.checks.core import Case, QualityCheck, at_least  # noqa: F401


def _cases(generator, hidden):
    x = torch.rand(64 if hidden else 32, 2, generator=generator)
    return [Case("held-out points", {"x": x}, private={"labels": (x[:, 0] > 0.5).long()})]


def _score(case, outputs):
    predicted = outputs["output"].argmax(dim=1)
    return {"accuracy": float((predicted == case.private["labels"]).float().mean())}


accuracy = QualityCheck(
    exercise="classifier accuracy", cases=_cases,
    run=lambda model, case: {"output": model(case.inputs["x"])},
    score=_score, thresholds={"accuracy": 0.9}, hint="train it longer")
'''

SETUP = "import torch\nimport quality_topic as checks"
RIGHT_MODEL = textwrap.dedent('''
    class Model(torch.nn.Module):
        def forward(self, x):
            return torch.stack([0.5 - x[:, 0], x[:, 0] - 0.5], dim=1)
''')
WRONG_MODEL = textwrap.dedent('''
    class Model(torch.nn.Module):
        def forward(self, x):
            return torch.stack([x[:, 1], 1 - x[:, 1]], dim=1)
''')
TRAINING = "torch.manual_seed(0)\nmodel = Model()\nloss = 0.05"
TEST = ("# The classifier's held-out accuracy and its final loss.\nchecks.accuracy(model)\n"
        "checks.at_least('small loss', 1 - loss, 0.9)\n"
        "### BEGIN HIDDEN TESTS\nchecks.accuracy(model, seed=2026, hidden=True)\n"
        "### END HIDDEN TESTS")


def quality_notebook() -> nbformat.NotebookNode:
    def cell(source, **info):
        metadata = {"nbgrader": {"schema_version": 3, "grade": False, "solution": False,
                                 "locked": False, "task": False, **info}}
        return nbformat.v4.new_code_cell(source, metadata=metadata)

    return nbformat.v4.new_notebook(cells=[
        cell(SETUP, grade_id="setup", locked=True),
        cell(RIGHT_MODEL, grade_id="model", solution=True),
        nbformat.v4.new_code_cell("print('a picture nobody needs')"),
        cell(TRAINING, grade_id="train_model", locked=True),
        cell(TEST, grade_id="test_model", grade=True, locked=True, points=3),
    ])


@pytest.fixture
def unsafe_jail(tmp_path, monkeypatch):
    """A jail without bubblewrap, whose Python also finds the fake checks module."""
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "quality_topic.py").write_text(QUALITY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    jail = Jail(Sandbox(None), tmp_path / "jail", "quality", Limits())
    environment = jail.unsafe_env

    def unsafe_env(home=None):
        env = environment(home)
        env["PYTHONPATH"] = f"{tmp_path / 'modules'}:{env['PYTHONPATH']}"
        return env

    monkeypatch.setattr(jail, "unsafe_env", unsafe_env)
    yield jail
    jail.close()


def run_recheck(jail, notebook, solutions, tmp_path, timeout=120):
    built = plans.build(notebook, "quality")
    assert built.problems == []
    reference = Reference(built, tmp_path / "reference")
    jail.data = reference.folder
    tests = set(built.points)
    return recheck.run(jail, built, reference, solutions, tests, None,
                       deadline=time.monotonic() + timeout, unit_timeout=60)


def test_a_trained_model_is_rechecked_on_held_out_data_it_never_saw(unsafe_jail, tmp_path):
    results, notes = run_recheck(unsafe_jail, quality_notebook(), {"model": RIGHT_MODEL},
                                 tmp_path)
    assert notes == []
    assert {k: v.passed for k, v in results.items()} == {
        "test_model.0": True, "test_model.1": True, "test_model.2": True}, results
    cases = json.loads((tmp_path / "reference" / "cases-test_model.0.json").read_text())
    assert "labels" not in json.dumps(cases)  # the answers never reach the sandbox


def test_a_model_below_the_threshold_fails_with_the_checks_own_message(unsafe_jail, tmp_path):
    results, _ = run_recheck(unsafe_jail, quality_notebook(), {"model": WRONG_MODEL}, tmp_path)
    assert not results["test_model.0"].passed and not results["test_model.2"].passed
    assert "needs at least 90.0 %" in results["test_model.0"].message
    assert "train it longer" in results["test_model.0"].message
    assert results["test_model.1"].passed  # the loss comes from the locked training cell


def test_a_check_call_that_kills_the_runner_fails_alone(unsafe_jail, tmp_path):
    """The runner restarts after the step that killed it; the other tests are judged."""
    source = solution_notebook(NAME)
    built = plans.build(source, NAME)
    reference = Reference(built, tmp_path / "reference")
    unsafe_jail.data = reference.folder
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
                 if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}
    solutions["to_chw_float"] = "import os\n\ndef to_chw_float(image):\n    os._exit(3)\n"
    results, notes = recheck.run(unsafe_jail, built, reference, solutions, set(built.points),
                                 None, deadline=time.monotonic() + 300,
                                 unit_timeout=120)
    assert not results["test_to_chw_float.0"].passed
    assert "exited (status 3)" in results["test_to_chw_float.0"].message
    assert results["test_rgb_to_grayscale.0"].passed and results["test_rgb_to_grayscale.1"].passed


# --- the trusted side's judgement, on answers made up here --------------------------------------


@pytest.fixture(scope="module")
def welcome_reference(tmp_path_factory):
    built = plans.build(solution_notebook(NAME), NAME)
    return built, Reference(built, tmp_path_factory.mktemp("reference"))


def answer_with(implementation, reference, call_id):
    outcomes = [{"outputs": run_function(implementation, case)}
                for case in reference.cases[call_id]]
    return {"outcomes": outcomes}


def test_right_outputs_pass_and_wrong_ones_fail_with_the_mistakes_hint(welcome_reference):
    built, reference = welcome_reference
    call = built.calls["test_to_chw_float.1"]
    right = answer_with(welcome._reference_to_chw_float, reference, call.id)
    assert reference.judge(call, right).passed
    def forgets_255(image):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("expected (H, W, 3)")
        return torch.from_numpy(image).permute(2, 0, 1).float()

    wrong = answer_with(forgets_255, reference, call.id)
    verdict = reference.judge(call, wrong)
    assert not verdict.passed and "divide the uint8 values by 255" in verdict.message


@pytest.mark.parametrize("answer, message", [
    ([], "malformed"),
    ({"outcomes": "all good"}, "malformed"),
    ({"outcomes": [{"outputs": ["not", "a", "dict"]}]}, "malformed"),
    ({"outcomes": []}, "no outputs for the case"),
    ({"failed": "to_chw_float: your code raised ValueError"}, "raised ValueError"),
    ({"outcomes": [{"outputs": {"output": math.inf}}]}, "should be a torch.Tensor"),
])
def test_malformed_or_failed_answers_fail_and_never_crash_the_grader(welcome_reference, answer,
                                                                     message):
    built, reference = welcome_reference
    verdict = reference.judge(built.calls["test_to_chw_float.0"], answer)
    assert not verdict.passed and message in verdict.message
