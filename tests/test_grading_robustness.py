"""The grader's trusted side cannot be stalled, and a batch keeps what it graded.

- ``safefile``: a FIFO, a link, a device or a huge file in place of a file the grader reads
  neither blocks nor crashes it;
- ``pool``: a grading step that hangs is killed and recorded (``grader_timeout``), a worker
  that dies is replaced, and the batch goes on;
- ``record`` and ``--resume``: a batch killed half-way keeps its finished results, and the
  next run grades only the rest;
- ``inert``: no script survives in what the instructor opens;
- ``replay``: the re-check replays the student's own cells that the graded code needs, and
  only those.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from course_utils.tools.grading import inert, pool, replay
from course_utils.tools.grading import plan as plans
from course_utils.tools.grading import submission as submissions
from course_utils.tools.grading.recheck import _progress
from course_utils.tools.grading.safefile import UnsafeFile, copy_regular, read_regular
from tests.notebook_code import ROOT

# --- files the student's side could have replaced -----------------------------------------------


def in_thread(function, timeout: float = 10.0):
    """Run ``function``; fail (instead of hanging the test suite) if it blocks."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = function()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the read blocked"
    return outcome


@pytest.mark.parametrize("kind", ["fifo", "symlink", "device link", "folder", "huge"])
def test_a_replaced_file_neither_blocks_nor_crashes_a_read(tmp_path, kind):
    path = tmp_path / "progress.txt"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        secret = tmp_path / "secret"
        secret.write_text("begin 0 1.0\n")
        path.symlink_to(secret)
    elif kind == "device link":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        with open(path, "wb") as handle:
            handle.truncate(1 << 33)  # 8 GB, sparse
    outcome = in_thread(lambda: read_regular(path, 1 << 20))
    assert isinstance(outcome.get("error"), UnsafeFile)
    assert in_thread(lambda: _progress(path)).get("value") == []
    target = tmp_path / "copy"
    assert isinstance(in_thread(lambda: copy_regular(path, target, 1 << 20)).get("error"),
                      UnsafeFile)
    assert not target.exists()


def test_a_regular_file_is_read_whole_or_by_its_tail(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"a" * 100 + b"END")
    assert read_regular(path, 1000) == b"a" * 100 + b"END"
    assert read_regular(path, 3, tail=True) == b"END"
    with pytest.raises(UnsafeFile, match="larger"):
        read_regular(path, 3)


# --- the pool: a hung trusted step, a dead worker ----------------------------------------------


def stand_in_grade(job: submissions.Job) -> submissions.Result:
    """Grades instantly, except: "hangs" never returns, "dies" kills its worker once."""
    if job.student == "hangs":
        time.sleep(3600)
    if job.student == "dies" and not Path(job.workspace, "died").exists():
        Path(job.workspace, "died").touch()
        os.kill(os.getpid(), signal.SIGKILL)
    result = submissions.Result(job.assignment, job.student, "graded")
    result.cells["test"] = submissions.CellResult(1.0, 1.0, "test", "passed", "passed")
    return result


def make_job(student: str, workspace: Path) -> submissions.Job:
    return submissions.Job("00_welcome", student, None, None, "", "", None, "",
                           str(workspace), submissions.Settings())


def test_a_hung_grading_step_is_killed_and_recorded_and_the_batch_goes_on(tmp_path):
    jobs = [make_job(s, tmp_path) for s in ("first", "hangs", "dies", "last")]
    seen: dict[str, submissions.Result] = {}
    began = time.monotonic()
    finished = pool.run_jobs(jobs, 2, False, lambda job, result: seen.update({job.student:
                                                                              result}),
                             budget=lambda job: 8.0, grade=stand_in_grade)
    assert finished and set(seen) == {"first", "hangs", "dies", "last"}
    assert time.monotonic() - began < 120
    assert seen["hangs"].status == "failed" and seen["hangs"].reasons == ["grader_timeout"]
    assert "budget" in seen["hangs"].details[0]
    for student in ("first", "dies", "last"):  # "dies" was graded again on a new worker
        assert seen[student].status == "graded", seen[student]


def test_on_result_returning_false_stops_the_batch(tmp_path):
    jobs = [make_job(s, tmp_path) for s in ("a", "b", "c", "d")]
    seen = []

    def stop(job, result):
        seen.append(job.student)
        return False

    finished = pool.run_jobs(jobs, 1, False, stop, budget=lambda job: 60.0,
                             grade=stand_in_grade)
    assert not finished and seen == ["a"]


# --- what the instructor opens -------------------------------------------------------------------


def test_outputs_are_made_inert_and_text_is_kept():
    png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
           "AAAABJRU5ErkJggg==")
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": "<script>evil()</script>"}),
        nbformat.v4.new_output("display_data", data={"application/javascript": "evil()"}),
        nbformat.v4.new_output("display_data", data={"image/svg+xml": "<svg><script/></svg>",
                                                     "text/plain": "<SVG>"}),
        nbformat.v4.new_output("display_data", data={"image/png": png}),
        nbformat.v4.new_output("display_data", data={"image/png": "PHNjcmlwdD4="}),  # markup
        nbformat.v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=1),
        nbformat.v4.new_output("stream", name="stdout", text="hello"),
    ]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    notebook.metadata["widgets"] = {"state": "<script>"}
    inert.notebook(notebook)
    data = [o.get("data", {}) for o in cell.outputs]
    assert data[0] == {"text/plain": "<script>evil()</script>"}  # shown as text, not run
    assert "application/javascript" not in data[1] and "not shown" in data[1]["text/plain"]
    assert data[2] == {"text/plain": "<SVG>"}
    assert data[3] == {"image/png": png}
    assert "image/png" not in data[4]
    assert data[5] == {"text/plain": "42"} and cell.outputs[6].text == "hello"
    assert "widgets" not in notebook.metadata
    nbformat.validate(notebook)


def test_raw_html_in_a_written_answer_is_shown_as_text():
    answer = ("Luma weighs green most. <script>evil()</script> <img src=x onerror=evil()> "
              "[a link](javascript:evil()) and `x < y` in code\n```\n<b>kept</b>\n```")
    cell = nbformat.v4.new_markdown_cell(answer)
    inert.notebook(nbformat.v4.new_notebook(cells=[cell]))
    assert "<script" not in cell.source and "<img" not in cell.source
    assert "&lt;script>evil()&lt;/script>" in cell.source  # the text is still there to read
    assert "(javascript:" not in cell.source
    assert "`x < y`" in cell.source and "\n<b>kept</b>\n" in cell.source


# --- which cells the re-check replays -----------------------------------------------------------


def test_the_recheck_replays_the_students_helpers_and_not_their_experiments():
    name = "00_welcome"
    source = ROOT / "solutions" / name / f"{name}.ipynb"
    plan = plans.build(source, name)
    notebook = nbformat.read(ROOT / "notebooks" / name / f"{name}.ipynb", as_version=4)
    assert [s.kind for s in replay.steps(plan, notebook)] == [s.kind for s in plan.steps]

    def at(grade_id: str) -> int:
        return next(i for i, c in enumerate(notebook.cells)
                    if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)

    exercise = notebook.cells[at("to_chw_float")]
    exercise.source = "def to_chw_float(image):\n    return helper(image) / SCALE\n"
    cells = [nbformat.v4.new_code_cell(text) for text in (
        "SCALE = 255.0\nunused = 1",                       # needed: SCALE
        "import time\ntime.sleep(600)  # an experiment",   # needed by nothing
        "def helper(image):\n    return inner(image)",    # needed: helper
        "def inner(image):\n    return torch.as_tensor(image).permute(2, 0, 1).float()",
        "%matplotlib inline\nshown = to_chw_float(example)  # a try-it cell: not needed",
    )]
    position = at("to_chw_float")
    for cell in reversed(cells[:4]):
        notebook.cells.insert(position, cell)
    notebook.cells.insert(at("test_to_chw_float") + 1, cells[4])
    replayed = [s for s in replay.steps(plan, notebook) if s.kind == "student"]
    assert [s.source for s in replayed] == [cells[0].source, cells[2].source, cells[3].source]


# --- a batch stopped half-way, then resumed -------------------------------------------------


@pytest.mark.notebook
def test_a_batch_killed_half_way_keeps_its_results_and_resume_grades_only_the_rest(tmp_path):
    from course_utils.tools.grading.nbgrader import grades, make_course
    from course_utils.tools.grading.sandbox import find_bwrap

    if find_bwrap() is None:
        if os.environ.get("CI"):
            pytest.fail("bubblewrap is missing: CI must `apt-get install -y bubblewrap`")
        pytest.skip("bubblewrap is not installed")
    name = "00_welcome"
    course = make_course(tmp_path / "course", ROOT, [name])
    solution = nbformat.read(course / "solutions" / name / f"{name}.ipynb", as_version=4)
    blank = nbformat.read(course / "notebooks" / name / f"{name}.ipynb", as_version=4)
    answers = {c.metadata.nbgrader["grade_id"]: c.source for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in blank.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    slow = nbformat.from_dict(json.loads(nbformat.writes(blank)))
    slow.cells.append(nbformat.v4.new_code_cell("import time\ntime.sleep(600)"))
    for student, notebook in (("a_first", blank), ("b_slow", slow), ("c_last", blank)):
        folder = course / "submitted" / student / name
        folder.mkdir(parents=True)
        nbformat.write(notebook, folder / f"{name}.ipynb")
    command = [sys.executable, "-m", "course_utils", "grade", str(course / "submitted"),
               "--course", str(course), "--assignment", name, "--jobs", "1",
               "--no-progress", "--no-preflight", "--no-feedback", "--cell-timeout", "900"]
    report = course / "grades" / f"{name}.json"
    process = subprocess.Popen(command, cwd=course, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not (
                report.exists() and "a_first" in json.loads(report.read_text() or "{}")):
            time.sleep(1)
        time.sleep(3)  # b_slow is running now
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the instructor's machine goes down
        process.wait()
    kept = json.loads(report.read_text())
    assert set(kept) == {"a_first"}, kept.keys()
    assert kept["a_first"]["score"] == 4
    assert (course / "grades" / f"{name}.csv").read_text().count("\na_first,") == 1
    assert grades(course, name, "a_first")["test_to_chw_float"].score == 2

    nbformat.write(blank, course / "submitted" / "b_slow" / name / f"{name}.ipynb")  # fixed
    resumed = subprocess.run([*command, "--resume"], cwd=course, capture_output=True,
                             text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "1 submission(s) already graded, 2 to grade" in resumed.stdout
    final = json.loads(report.read_text())
    assert set(final) == {"a_first", "b_slow", "c_last"}
    assert final["a_first"]["seconds"] == kept["a_first"]["seconds"]  # not graded again
    assert all(final[s]["score"] == 4 for s in final)
    rows = (course / "grades" / f"{name}.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["a_first", "b_slow", "c_last"]
