"""Grading on a Dask cluster (``grade --scheduler``): the same scores and reason codes as the
local path, nothing lost when a worker dies, a worker of another course version refused.

The fast tests check the pieces (fingerprint, parcels, the worker filter). The slow ones
(marked ``notebook``) start a real ``dask scheduler`` and real ``dask worker`` processes on
this machine, as an instructor would on a cluster, and grade a batch of 00_welcome and
03_similarity_contrastive submissions (solutions, blanks, broken and hostile ones) both ways.

Needs bubblewrap and Dask's ``distributed`` (the ``cluster`` extra); skipped without them,
except on CI.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import nbformat
import pytest

from course_utils.tools.grading import batch, cluster
from course_utils.tools.grading import submission as submissions
from course_utils.tools.grading.jail import make_workspace
from course_utils.tools.grading.nbgrader import make_course
from course_utils.tools.grading.sandbox import Sandbox, find_bwrap
from tests.notebook_code import ROOT

NAMES = ("00_welcome", "03_similarity_contrastive")


# --- the pieces ----------------------------------------------------------------------------------


def small_course(folder: Path, answer: str = "42") -> Path:
    (folder / "solutions" / "a").mkdir(parents=True)
    (folder / "nbgrader_config.py").write_text("c = get_config()\n")
    (folder / "solutions" / "a" / "a.py").write_text(f"answer = {answer}\n")
    return folder


def test_the_fingerprint_follows_the_solutions_not_the_caches(tmp_path):
    course = small_course(tmp_path / "course")
    first = cluster.course_fingerprint(course)
    assert first.startswith("0.1.0-")
    (course / "solutions" / "a" / "__pycache__").mkdir()
    (course / "solutions" / "a" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert cluster.course_fingerprint(course) == first
    other = small_course(tmp_path / "other", answer="41")
    assert cluster.course_fingerprint(other) != first


class FakeClient:
    def __init__(self, statuses):
        self.statuses = statuses

    def run(self, function):
        assert function is cluster.worker_status
        return self.statuses


def test_workers_of_another_version_or_without_a_sandbox_are_refused_by_name(capsys):
    good = {"fingerprint": "0.1.0-aaaa", "sandbox": True}
    client = FakeClient({"tcp://w1:1": good, "tcp://w2:1": {**good, "fingerprint": "0.1.0-bbbb"},
                         "tcp://w3:1": {**good, "sandbox": False}})
    assert cluster.usable_workers(client, "0.1.0-aaaa", False, sys.stdout) == ["tcp://w1:1"]
    out = capsys.readouterr().out
    assert "refused worker tcp://w2:1: it runs course 0.1.0-bbbb" in out
    assert "refused worker tcp://w3:1: it has no bubblewrap" in out
    with pytest.raises(cluster.ClusterError, match="no worker of the cluster can grade"):
        cluster.usable_workers(FakeClient({"tcp://w2:1": client.statuses["tcp://w2:1"]}),
                               "0.1.0-aaaa", False, sys.stdout)
    with pytest.raises(cluster.ClusterError, match="has no workers"):
        cluster.usable_workers(FakeClient({}), "0.1.0-aaaa", False, sys.stdout)


def test_a_parcel_holds_no_path_outside_its_folder(tmp_path):
    files = cluster._pack_folder(small_course(tmp_path / "course"))
    files["../../escaped.txt"] = "aGk="
    cluster._unpack_folder(files, tmp_path / "unpacked")
    assert (tmp_path / "unpacked" / "solutions" / "a" / "a.py").read_text() == "answer = 42\n"
    assert not (tmp_path / "escaped.txt").exists()


def test_a_coordinator_without_a_sandbox_never_makes_the_workers_grade_unsafely():
    """The coordinator may lack bubblewrap (Sandbox.detect then gives it none); only
    --unsafe may let the cluster's workers grade without theirs."""
    none_here = Sandbox(None)
    assert not batch.grades_unsafely(batch.Options("s", scheduler="tcp://h:1"), none_here)
    assert batch.grades_unsafely(batch.Options("s", scheduler="tcp://h:1", unsafe=True),
                                 none_here)
    assert batch.grades_unsafely(batch.Options("s", unsafe=True), none_here)  # locally


def test_a_result_comes_back_as_data_and_is_rebuilt_the_same():
    result = submissions.Result("00_welcome", "alice", "flagged", ["timeout"], ["a cell"],
                                {"test_x": submissions.CellResult(0.0, 2.0, "test", "timeout",
                                                                  "skipped", ["slow"])})
    data = json.loads(json.dumps(asdict(result)))  # what crosses the network
    assert cluster.result_from_dict(data) == result


def test_a_worker_of_another_version_refuses_a_parcel(tmp_path, monkeypatch):
    monkeypatch.chdir(small_course(tmp_path / "course"))
    parcel = {"settings": {"unsafe": True}, "job": {}}
    with pytest.raises(cluster.VersionMismatch, match="this worker runs course 0.1.0-"):
        cluster.grade_parcel(parcel, "0.1.0-not-this-one", 60.0)


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 3.0)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(cluster.ClusterError, match=f"cannot reach the Dask scheduler at "
                                                   f"tcp://127.0.0.1:{port}"):
        cluster.connect(f"tcp://127.0.0.1:{port}", 1, False)
    assert time.monotonic() - start < cluster.CONNECT_TIMEOUT + 15


def test_a_deep_temporary_folder_still_leaves_room_for_the_kernels_sockets(tmp_path,
                                                                          monkeypatch):
    deep = tmp_path / ("a-worker-scratch-space-" * 4)  # a worker's TMPDIR can be this deep
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    workspace = make_workspace("grade-dask-")
    try:
        sockets = workspace / "jails" / "jail-h4s28ndu" / "kernel" / "run"
        sockets.mkdir(parents=True)
        with socket.socket(socket.AF_UNIX) as kernel:
            kernel.bind(str(sockets / "kernel-4"))  # OSError: AF_UNIX path too long, if not
    finally:
        shutil.rmtree(workspace)


def test_a_worker_keeps_its_grading_process_and_replaces_it_past_a_budget(tmp_path):
    job = submissions.Job("00_welcome", "alice", None, None, "missing.ipynb", "missing.ipynb",
                          None, "sqlite:///missing.db", str(tmp_path),
                          submissions.Settings(unsafe=True))  # graded at once: not submitted
    job_file, result_file = tmp_path / "job.json", tmp_path / "result.json"
    job_file.write_text(json.dumps(asdict(job)))
    grader = cluster._GradingProcess()
    try:
        assert grader.grade(job_file, result_file, 120, gpu=False) == "done"
        assert json.loads(result_file.read_text())["student"] == "alice"
        first = grader.process.pid
        assert grader.grade(job_file, result_file, 120, gpu=False) == "done"
        assert grader.process.pid == first  # torch and the grader loaded once
        assert grader.grade(job_file, result_file, 0, gpu=False) == "timeout"
        assert grader.process is None  # killed
        assert grader.grade(job_file, result_file, 120, gpu=False) == "done"
        assert grader.process.pid != first
    finally:
        grader.kill()


def test_a_grading_process_never_grades_a_run_with_another_runs_sandbox_or_gradebook(
        tmp_path):
    """A cluster worker's grading process outlives a run: what it keeps is keyed by run."""
    assert not submissions.sandbox(submissions.Settings(unsafe=True)).safe
    assert submissions.sandbox(submissions.Settings(unsafe=False)).safe == (
        find_bwrap() is not None)
    name = NAMES[0]
    job = submissions.Job(name, "alice", None, None,
                          str(ROOT / "solutions" / name / f"{name}.ipynb"),
                          str(ROOT / "notebooks" / name / f"{name}.ipynb"), None,
                          "sqlite:///first.db", str(tmp_path / "first"), submissions.Settings())
    first = submissions.assignment_state(job)
    assert submissions.assignment_state(replace(job, student="bob")) is first
    second = submissions.assignment_state(replace(job, db_url="sqlite:///second.db",
                                                  workspace=str(tmp_path / "second")))
    assert second is not first and second[1].db_url == "sqlite:///second.db"


# --- a real cluster ------------------------------------------------------------------------------


def needs_cluster() -> None:
    missing = [what for what, ok in [("bubblewrap", find_bwrap() is not None),
                                     ("distributed", _has_distributed())] if not ok]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{' and '.join(missing)} missing: CI installs the cluster extra and "
                        "bubblewrap")
        pytest.skip(f"{' and '.join(missing)} not installed")


def _has_distributed() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def build_batch(course: Path) -> dict[str, list[str]]:
    """Submissions of 00 and 03 in ``course/submitted``; returns the students by assignment."""
    batch: dict[str, list[str]] = {}
    for name in NAMES:
        solution = nbformat.read(course / "solutions" / name / f"{name}.ipynb", as_version=4)
        blank = nbformat.read(course / "notebooks" / name / f"{name}.ipynb", as_version=4)
        answers = {grade_id(c): c.source for c in solution.cells if c.cell_type == "code"
                   and c.metadata.get("nbgrader", {}).get("solution")}
        solved = copy.deepcopy(blank)
        for cell in solved.cells:
            if grade_id(cell) in answers:
                cell.source = answers[grade_id(cell)]
        notebooks = {"solved": solved, "blank": blank}
        if name == "00_welcome":
            looping = copy.deepcopy(solved)
            for cell in looping.cells:
                if grade_id(cell) == "to_chw_float":
                    cell.source = ("def to_chw_float(image):\n    while True:\n"
                                   "        pass\n")
            dying = copy.deepcopy(solved)
            dying.cells.insert(1 + next(i for i, c in enumerate(dying.cells)
                                        if grade_id(c) == "test_to_chw_float"),
                               nbformat.v4.new_code_cell("import os\nos._exit(1)"))
            notebooks.update(looping=looping, dying=dying, not_json="{ this is not a notebook")
        for student, notebook in notebooks.items():
            folder = course / "submitted" / student / name
            folder.mkdir(parents=True)
            path = folder / f"{name}.ipynb"
            if isinstance(notebook, str):
                path.write_text(notebook)
            else:
                nbformat.write(notebook, path)
        batch[name] = sorted(notebooks)
    return batch


def grade(course: Path, *extra: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "course_utils", "grade", str(course / "submitted"),
         "--course", str(course), "--cell-timeout", "90", "--timeout", "600", "--memory", "2",
         "--no-progress", *extra],
        cwd=course, capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))


def outcome(course: Path) -> dict[tuple[str, str], tuple]:
    """(assignment, student) -> (status, sorted reasons, scores by cell), from the reports."""
    found = {}
    for name in NAMES:
        report = json.loads((course / "grades" / f"{name}.json").read_text())
        for student, entry in report.items():
            scores = tuple(sorted((cell, value["score"])
                                  for cell, value in entry["cells"].items()))
            found[(name, student)] = (entry["status"], tuple(sorted(entry["reasons"])), scores)
    return found


class Cluster:
    """A ``dask scheduler`` and ``dask worker`` processes, each in its own process group."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.folder = folder
        self.processes: dict[str, subprocess.Popen] = {}
        self.start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                 "--dashboard-address", ":0"], folder)

    def start(self, name: str, arguments: list[str], cwd: Path) -> None:
        """Start ``dask <arguments>`` in ``cwd``; its temporary files go to FOLDER/name/tmp."""
        scratch = self.folder / name / "tmp"
        scratch.mkdir(parents=True)
        with open(self.folder / f"{name}.log", "w") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_" + arguments[0], *arguments[1:]],
                cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(scratch)))

    def worker(self, name: str, course: Path) -> None:
        self.start(name, ["worker", self.address, "--nthreads", "1", "--name", name,
                          "--dashboard-address", ":0", "--local-directory",
                          str(self.folder / name / "dask")], course)

    def wait_for_workers(self, count: int, timeout: float = 120) -> None:
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(count, timeout=timeout)

    def kill(self, name: str) -> None:
        """Kill a process and everything it started at once, as a lost node would (the
        worker, its nanny, the grading process and its sandbox)."""
        process = self.processes.pop(name)
        tree = [pid for pid in _processes() if process.pid in _ancestors(pid)]
        os.killpg(process.pid, signal.SIGKILL)
        for pid in tree:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        process.wait()

    def close(self) -> None:
        for name in list(self.processes):
            with contextlib.suppress(OSError):
                self.kill(name)


@pytest.fixture(scope="module")
def courses(tmp_path_factory):
    """Two copies of one course with the same batch: one graded locally, one on the cluster."""
    needs_cluster()
    base = tmp_path_factory.mktemp("cluster")
    local = make_course(base / "local", ROOT, list(NAMES))
    batch = build_batch(local)
    on_cluster = base / "on_cluster"
    shutil.copytree(local, on_cluster, ignore=shutil.ignore_patterns("gradebook.db"))
    make_course(on_cluster, ROOT, list(NAMES))  # its own gradebook
    return local, on_cluster, batch


@pytest.fixture(scope="module")
def local_run(courses):
    local, _, _ = courses
    process = grade(local, "--jobs", "2")
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return outcome(local)


@pytest.fixture(scope="module")
def cluster_run(courses, tmp_path_factory):
    """The same batch on a scheduler and two workers, beside a third worker whose course
    differs by one solution file (refused)."""
    _, course, _ = courses
    folder = tmp_path_factory.mktemp("dask")
    stale = folder / "stale-course"
    shutil.copytree(course, stale, ignore=shutil.ignore_patterns("submitted", "gradebook.db"))
    with (stale / "solutions" / NAMES[0] / f"{NAMES[0]}.py").open("a") as changed:
        changed.write("\n# an older version of the lesson\n")
    dask = Cluster(folder)
    try:
        dask.worker("good-1", course)
        dask.worker("good-2", course)
        dask.worker("stale", stale)
        dask.wait_for_workers(3)
        process = grade(course, "--scheduler", dask.address)
    finally:
        dask.close()
    return process, outcome(course) if (course / "grades").exists() else {}


@pytest.mark.notebook
def test_the_cluster_gives_the_local_scores_and_reason_codes(local_run, cluster_run, courses):
    process, on_cluster = cluster_run
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    expected = {(name, student) for name, students in courses[2].items()
                for student in students}
    assert set(local_run) == expected
    assert on_cluster == local_run


@pytest.mark.notebook
def test_the_batch_has_what_it_must_show(local_run):
    assert local_run[("00_welcome", "solved")][0] == "graded"
    assert local_run[("00_welcome", "blank")][0] == "graded"
    assert "timeout" in local_run[("00_welcome", "looping")][1]
    assert "kernel_died" in local_run[("00_welcome", "dying")][1]
    assert local_run[("00_welcome", "not_json")][1] == ("invalid_notebook",)
    assert local_run[("03_similarity_contrastive", "solved")][0] == "graded"


@pytest.mark.notebook
def test_a_worker_of_another_course_version_is_refused_by_name(cluster_run):
    process, _ = cluster_run
    assert "refused worker" in process.stdout and "install the course at the same commit" \
        in process.stdout


@pytest.mark.notebook
def test_a_worker_killed_mid_submission_loses_nothing_and_records_once(courses,
                                                                       tmp_path_factory):
    local, _, batch = courses
    folder = tmp_path_factory.mktemp("dask-kill")
    course = folder / "course"
    shutil.copytree(local, course, ignore=shutil.ignore_patterns("gradebook.db", "grades",
                                                                 "autograded", "feedback"))
    make_course(course, ROOT, list(NAMES))
    dask = Cluster(folder)
    try:
        dask.worker("first", course)
        dask.worker("second", course)
        dask.wait_for_workers(2)
        grading = subprocess.Popen(
            [sys.executable, "-m", "course_utils", "grade", str(course / "submitted"),
             "--course", str(course), "--assignment", "03_similarity_contrastive",
             "--cell-timeout", "90", "--timeout", "600", "--memory", "2", "--no-progress",
             "--scheduler", dask.address],
            cwd=course, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        first = dask.processes["first"]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not _grading_in(first):
            time.sleep(0.5)
        assert _grading_in(first), "the first worker never started grading"
        dask.kill("first")  # mid-submission: its task goes to the second worker
        out, _ = grading.communicate(timeout=1500)
    finally:
        dask.close()
    assert grading.returncode == 0, out[-3000:]
    report = json.loads((course / "grades" / "03_similarity_contrastive.json").read_text())
    assert sorted(report) == batch["03_similarity_contrastive"]
    csv = (course / "grades" / "03_similarity_contrastive.csv").read_text().splitlines()
    students = [line.split(",")[0] for line in csv[1:]]
    assert sorted(students) == sorted(set(students)) == batch["03_similarity_contrastive"]
    assert report["solved"]["status"] == "graded"


@pytest.mark.notebook
def test_the_scheduler_gone_stops_the_command_and_resume_grades_the_rest(courses,
                                                                         tmp_path_factory):
    local, _, batch = courses
    folder = tmp_path_factory.mktemp("dask-gone")
    course = folder / "course"
    shutil.copytree(local, course, ignore=shutil.ignore_patterns(
        "gradebook.db", "grades", "autograded", "feedback", "looping"))  # no 90 s timeout
    make_course(course, ROOT, list(NAMES))
    students = sorted(set(batch[NAMES[0]]) - {"looping"})
    command = [sys.executable, "-m", "course_utils", "grade", str(course / "submitted"),
               "--course", str(course), "--assignment", NAMES[0], "--cell-timeout", "90",
               "--timeout", "600", "--memory", "2", "--no-progress", "--scheduler"]
    dask = Cluster(folder / "first")
    try:
        dask.worker("worker", course)
        dask.wait_for_workers(1)
        grading = subprocess.Popen([*command, dask.address], cwd=course, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"))
        report = course / "grades" / f"{NAMES[0]}.json"
        deadline = time.monotonic() + 600  # until the first submission is recorded
        while time.monotonic() < deadline and not (report.exists() and _entries(report)):
            time.sleep(0.2)
        dask.kill("scheduler")
        stopped, _ = grading.communicate(timeout=600)
    finally:
        dask.close()
    assert grading.returncode == 2, stopped[-3000:]
    assert "stopped: the Dask scheduler is gone" in stopped and "--resume" in stopped
    kept = _entries(report)
    assert 1 <= len(kept) < len(students), kept  # what was graded before is kept

    dask = Cluster(folder / "second")
    try:
        dask.worker("worker", course)
        dask.wait_for_workers(1)
        resumed = subprocess.run([*command, dask.address, "--resume"], cwd=course, text=True,
                                 capture_output=True, timeout=1200,
                                 env=dict(os.environ, PYTHONUNBUFFERED="1"))
    finally:
        dask.close()
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert (f"--resume: {len(kept)} submission(s) already graded, "
            f"{len(students) - len(kept)} to grade") in resumed.stdout
    final = _entries(report)
    assert sorted(final) == students
    assert all(final[student] == kept[student] for student in kept)  # not graded again
    csv = (course / "grades" / f"{NAMES[0]}.csv").read_text().splitlines()
    assert sorted(line.split(",")[0] for line in csv[1:]) == students  # each once


def _entries(report: Path) -> dict:
    with contextlib.suppress(ValueError):  # being written
        return json.loads(report.read_text())
    return {}


def _grading_in(worker: subprocess.Popen) -> bool:
    """Whether a worker is grading now: a grading process descends from it."""
    for pid in _processes():
        with contextlib.suppress(OSError):
            if (b"grading.cluster" in Path(f"/proc/{pid}/cmdline").read_bytes()
                    and worker.pid in _ancestors(pid)):
                return True
    return False


def _processes() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _ancestors(pid: int) -> set[int]:
    """The parent, grandparent, ... of a process (empty if it is gone)."""
    found = set()
    with contextlib.suppress(OSError, AttributeError):
        while pid > 1:
            status = Path(f"/proc/{pid}/status").read_text()
            pid = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))
            found.add(pid)
    return found
