"""Grade one submission: read, restore, run in a jail, re-check outside, decide.

:func:`grade` runs in a worker process of the grading command and never raises: whatever the
submission does, it returns a :class:`Result` (scores by cell, a status, reason codes and the
autograded notebook). The main process writes it to the gradebook.

Reason codes (a submission is ``flagged`` when it has any, ``failed`` when it could not be
graded at all; its tests then score 0):

=======================  ==============================================================
``missing_notebook``     (failed) no notebook was submitted
``invalid_notebook``     (failed) the file is not a readable notebook (JSON, size, a link)
``cells_restored``       test or read-only cells were deleted, duplicated, edited, retyped,
                         or their points, flags or checksums changed: the instructor's
                         copies were used
``timeout``              a cell ran past the per-cell timeout, or the notebook past the
                         submission's (its test cells from there on score 0)
``kernel_died``          the kernel died (``os._exit``, a crash, a signal): the test cells
                         it did not run score 0
``memory_limit``         it ran out of its memory allowance (``MemoryError``, or killed)
``process_limit``        it started too many processes (a fork bomb): killed
``output_limit``         it printed more than the output allowance: killed
``disk_limit``           it wrote more than the disk allowance: killed
``tampering_suspected``  a test passed in the kernel but failed the authoritative re-check:
                         the re-check's result is recorded (the reverse, a test that failed
                         in the kernel, e.g. by writing to stderr, but passed the re-check,
                         is only a note in the details: the re-check's result counts)
``timestamp_mismatch``   the student's ``timestamp.txt`` disagrees with the time the
                         submission was received (the time received is recorded)
``grader_timeout``       (failed) grading it took longer than its budget from outside: the
                         grading worker was killed and replaced
``internal_error``       (failed) the grader itself failed on this submission
=======================  ==============================================================
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from course_utils.tools.grading import plan as plans
from course_utils.tools.grading import recheck as rechecks
from course_utils.tools.grading import replay, sanitize
from course_utils.tools.grading.execute import error_output, execute
from course_utils.tools.grading.jail import Jail
from course_utils.tools.grading.reference import Reference, fail
from course_utils.tools.grading.safefile import UnsafeFile, copy_regular
from course_utils.tools.grading.sandbox import Limits, Sandbox

KILL_REASONS = ("timeout", "memory_limit", "process_limit", "output_limit", "disk_limit")


@dataclass
class Settings:
    """How every submission of a run is graded (sent to the worker processes)."""

    course: str = ""  # the course folder, which no jail may see
    cell_timeout: float = 900.0
    timeout: float = 3600.0
    limits: dict = field(default_factory=lambda: asdict(Limits()))
    threads: int = 1
    gpu: bool = False
    unsafe: bool = False


@dataclass
class Job:
    assignment: str
    student: str
    notebook: str | None  # the submitted notebook (None: not submitted)
    folder: str | None  # the submission's folder, whose other files the kernel sees
    source: str  # the instructor's notebook (with solutions and hidden tests)
    release: str  # the student notebook as released
    extra: str | None  # the assignment's other released files (the release folder)
    db_url: str  # a read-only copy of the gradebook, for nbgrader's sanitizers
    workspace: str  # this run's private folder
    settings: Settings


@dataclass
class CellResult:
    score: float | None  # None: graded by hand
    max_score: float
    kind: str  # "test" or "answer"
    kernel: str = ""  # "passed", "failed", "timeout", "died", "not_run"
    recheck: str = ""  # "passed", "failed", "skipped"
    messages: list[str] = field(default_factory=list)


@dataclass
class Result:
    assignment: str
    student: str
    status: str  # "graded", "flagged", "failed"
    reasons: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    cells: dict[str, CellResult] = field(default_factory=dict)
    notebook: str | None = None  # the autograded notebook (JSON)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return sum(c.score or 0 for c in self.cells.values() if c.kind == "test")

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.cells.values() if c.kind == "test")

    def flag(self, reason: str, detail: str | None = None) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)
        if detail and detail not in self.details:
            self.details.append(detail)


# --- per-worker state ---------------------------------------------------------------------------

# What a grading process keeps between the jobs of a run, each with the key it was made for:
# a process that outlives a run (a cluster worker's) must not grade the next run's jobs
# with another run's settings (--unsafe), gradebook or workspace.
_SANDBOX: tuple[tuple, Sandbox] | None = None
_ASSIGNMENTS: dict[str, tuple[tuple, tuple]] = {}


def sandbox(settings: Settings) -> Sandbox:
    global _SANDBOX
    key = (settings.unsafe, settings.gpu, settings.threads, settings.course)
    if _SANDBOX is None or _SANDBOX[0] != key:
        from course_utils.tools.grading.sandbox import find_bwrap

        bwrap = None if settings.unsafe else find_bwrap()
        _SANDBOX = key, Sandbox(bwrap, gpu=settings.gpu, threads=settings.threads,
                                private=[Path(settings.course)] if settings.course else [])
    return _SANDBOX[1]


def assignment_state(job: Job):
    """The plan, the sanitizer's view and the reference of ``job``'s assignment (cached for
    the jobs of the same run: same source, release, gradebook and workspace)."""
    key = (job.source, job.release, job.db_url, job.workspace)
    if job.assignment not in _ASSIGNMENTS or _ASSIGNMENTS[job.assignment][0] != key:
        source = nbformat.read(job.source, as_version=4)
        release = nbformat.read(job.release, as_version=4)
        plan = plans.build(source, job.assignment)
        folder = Path(job.workspace) / "reference" / f"{job.assignment}-{os.getpid()}"
        reference = Reference(plan, folder)
        _ASSIGNMENTS[job.assignment] = key, (plan, sanitize.Assignment(
            job.assignment, source, release, job.db_url), reference)
    return _ASSIGNMENTS[job.assignment][1]


def empty_result(job: Job, plan: plans.Plan, source: nbformat.NotebookNode, status: str,
                 reason: str, detail: str) -> Result:
    result = Result(job.assignment, job.student, status)
    result.flag(reason, detail)
    for cell in source.cells:
        info = plans.nbgrader_info(cell)
        if info.get("grade") and info.get("grade_id"):
            kind = "test" if cell.cell_type == "code" and not info.get("solution") else "answer"
            result.cells[info["grade_id"]] = CellResult(0.0, float(info.get("points", 0)), kind,
                                                        messages=[detail])
    return result


# --- grading --------------------------------------------------------------------------------------


def grade(job: Job) -> Result:
    """Grade ``job``'s submission; never raises (an unexpected error is ``internal_error``)."""
    begin = time.monotonic()
    try:
        result = _grade(job)
    except Exception as error:
        try:
            plan, assignment, _ = assignment_state(job)
            result = empty_result(job, plan, assignment.source, "failed", "internal_error",
                                  f"{type(error).__name__}: {error}")
        except Exception:
            result = Result(job.assignment, job.student, "failed")
            result.flag("internal_error", f"{type(error).__name__}: {error}")
        result.details.append(traceback.format_exc()[-3000:])
    result.seconds["total"] = round(time.monotonic() - begin, 2)
    return result


def _grade(job: Job) -> Result:
    settings = job.settings
    plan, assignment, reference = assignment_state(job)
    loaded = sanitize.load(Path(job.notebook) if job.notebook else None)
    if loaded.notebook is None:
        return empty_result(job, plan, assignment.source, "failed", loaded.reason,
                            loaded.detail)
    result = Result(job.assignment, job.student, "graded")
    restored = sanitize.restore(loaded.notebook, assignment, job.student)
    for change in restored.changes:
        result.flag("cells_restored", change)
    notebook = restored.notebook
    limits = Limits(**settings.limits)
    root = Path(tempfile.mkdtemp(prefix="jail-", dir=Path(job.workspace) / "jails"))
    jails: list[Jail] = []
    try:
        # Two jails, two users: the re-check runs after the kernel, in a fresh process that
        # shares nothing with it (not its files, not its processes, not its limits).
        kernel_jail = Jail(sandbox(settings), root / "kernel", job.assignment, limits)
        jails.append(kernel_jail)
        files = _submission_files(job, root / "files")
        rechecks._copy_tree(files, kernel_jail.work, kernel_jail)
        begin = time.monotonic()
        run = execute(notebook, kernel_jail, cell_timeout=settings.cell_timeout,
                      deadline=begin + settings.timeout)
        result.seconds["kernel"] = round(run.seconds, 2)
        kernel_jail.close()
        if not run.started:
            raise RuntimeError(f"the kernel did not start: {run.log[-1500:]}")
        tests = _test_cells(notebook)
        status_of = {}
        for grade_id, (index, verdict) in tests.items():
            cell_run = run.cells.get(index)
            if cell_run is None:
                status_of[grade_id] = "not_run"
            elif cell_run.status in ("ok", "error"):
                status_of[grade_id] = verdict
            else:
                status_of[grade_id] = cell_run.status
        ran = {grade_id for grade_id, status in status_of.items()
               if status in ("passed", "failed")}  # the others score 0: nothing to re-check
        recheck_jail = Jail(sandbox(settings), root / "recheck", job.assignment, limits,
                            data=reference.folder)
        jails.append(recheck_jail)
        begin = time.monotonic()
        results, notes = rechecks.run(recheck_jail, plan, reference, restored.solutions(), ran,
                                      files, deadline=begin + settings.timeout,
                                      unit_timeout=settings.cell_timeout,
                                      replayed=replay.steps(plan, notebook))
        result.seconds["recheck"] = round(time.monotonic() - begin, 2)
        for note in notes:
            result.details.append(f"re-check: {note}")
        if recheck_jail.killed in KILL_REASONS:
            result.details.append(f"re-check stopped: {recheck_jail.killed}")
        _decide(result, plan, notebook, tests, status_of, results)
        _flag_run(result, run)
        _answers(result, notebook)
    finally:
        for jail in jails:
            jail.close()
        shutil.rmtree(root, ignore_errors=True)
    result.status = "flagged" if result.reasons else "graded"
    result.notebook = nbformat.writes(notebook)
    return result


def _submission_files(job: Job, target: Path) -> Path:
    """The files the kernel sees beside the notebook: the submission's other files, then the
    assignment's own (which win, as with nbgrader), never the notebook itself."""
    target.mkdir(parents=True)
    for source in [Path(p) for p in (job.folder, job.extra) if p]:
        copy_files(source, target, skip=lambda relative: relative.parts[0] == "__pycache__"
                   or relative.suffix == ".ipynb" or relative.name == "timestamp.txt")
    return target


MAX_FILE_BYTES = 64 << 20  # a larger file beside a notebook is not copied


def copy_files(source: Path, target: Path,
               skip: Callable[[Path], bool] = lambda relative: False) -> None:
    """Copy the folders and regular files under ``source`` into ``target`` (which exists),
    leaving out links, FIFOs, devices, files over MAX_FILE_BYTES, notebook checkpoints and
    every path (relative to ``source``) for which ``skip`` is true."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_symlink() or relative.parts[0] == ".ipynb_checkpoints" or skip(relative):
            continue
        if path.is_dir():
            (target / relative).mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            (target / relative).unlink(missing_ok=True)  # the assignment's own files win
            with contextlib.suppress(UnsafeFile, FileExistsError):
                copy_regular(path, target / relative, MAX_FILE_BYTES)


def _test_cells(notebook) -> dict[str, tuple[int, str]]:
    """grade_id -> (index, in-kernel result) of every autograded test cell: "passed" when
    nbgrader would give full marks (no error, nothing on stderr), else "failed"."""
    from nbgrader.utils import determine_grade

    found = {}
    for index, cell in enumerate(notebook.cells):
        info = plans.nbgrader_info(cell)
        if cell.cell_type == "code" and info.get("grade") and not info.get("solution"):
            score, maximum = determine_grade(cell)
            found[info["grade_id"]] = (index, "passed" if score == maximum else "failed")
    return found


def _decide(result: Result, plan: plans.Plan, notebook, tests, status_of, results) -> None:
    """Final score of each test cell: the re-check's verdict, 0 for a cell that did not run."""
    for grade_id, (index, _) in tests.items():
        cell = notebook.cells[index]
        points = plan.points.get(grade_id, float(plans.nbgrader_info(cell).get("points", 0)))
        kernel = status_of.get(grade_id, "not_run")
        calls = plan.test_calls(grade_id)
        entry = CellResult(0.0, points, "test", kernel=kernel)
        result.cells[grade_id] = entry
        if kernel not in ("passed", "failed"):
            entry.recheck = "skipped"
            why = {"timeout": "it ran past the time limit",
                   "died": "the kernel died while it ran",
                   "not_run": "it did not run (the kernel had died or timed out before)"}
            entry.messages.append(why.get(kernel, kernel))
            if not any(o.get("output_type") == "error" for o in cell.outputs):
                cell.outputs.append(error_output("NotRun", f"{why.get(kernel, kernel)}: "
                                                           "this test scores 0"))
            continue
        outcome = [results.get(c.id) or fail(c.id, "not re-checked") for c in calls]
        visible = all(r.passed for c, r in zip(calls, outcome, strict=True) if not c.hidden)
        hidden = all(r.passed for c, r in zip(calls, outcome, strict=True) if c.hidden)
        passed = visible and hidden
        entry.recheck = "passed" if passed else "failed"
        entry.score = points if passed else 0.0
        for call, verdict in zip(calls, outcome, strict=True):
            if not verdict.passed:
                entry.messages.append(f"{call.label}: {verdict.message}")
        if kernel == "passed" and not visible:  # the notebook claims more than is true
            shown = "; ".join(entry.messages)[:600]
            result.flag("tampering_suspected",
                        f"{grade_id}: passed in the kernel but failed the re-check"
                        + (f" ({shown})" if shown else ""))
        elif kernel == "failed" and visible:  # no evidence of anything: a plain note
            result.details.append(f"note: {grade_id} failed in the notebook ({why_failed(cell)}) "
                                  "but passed the re-check, whose result counts")
        _annotate(cell, calls, outcome, kernel, visible, hidden, points)


def why_failed(cell) -> str:
    """Why nbgrader would give a test cell no points: its error, or what it wrote to stderr."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename')}: {str(out.get('evalue'))[:200]}"
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            text = str(out.get("text", "")).strip().splitlines()
            return f"it wrote to stderr: {text[0][:200] if text else ''}"
    return "no points by nbgrader's rule"


def _annotate(cell, calls, outcome, kernel: str, visible: bool, hidden: bool,
              points: float) -> None:
    """Say in the test cell's outputs what the grader decided (no hidden test is shown)."""
    has_hidden = any(c.hidden for c in calls)
    parts = [f"visible tests {'passed' if visible else 'failed'}"]
    if has_hidden:
        parts.append(f"hidden tests {'passed' if hidden else 'failed'}")
    score = points if visible and hidden else 0
    text = (f"[grader] checked again outside your notebook: {', '.join(parts)}; "
            f"{score:g} of {points:g} points\n")
    cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=text))
    if score == 0 and not any(o.get("output_type") == "error" for o in cell.outputs):
        if not visible:
            message = next(r.message for c, r in zip(calls, outcome, strict=True)
                           if not c.hidden and not r.passed)
            cell.outputs.append(error_output("RecheckFailed", message))
        else:
            cell.outputs.append(error_output(
                "HiddenTestsFailed", "your code passes the visible tests but not the hidden "
                                     "ones: check every case the exercise describes"))


def _flag_run(result: Result, run) -> None:
    if run.timeouts or run.killed == "timeout":
        where = ", ".join(run.timeouts) or "the notebook"
        result.flag("timeout", f"time limit reached in {where}")
    if run.killed in KILL_REASONS and run.killed != "timeout":
        result.flag(run.killed, f"the kernel was stopped: {run.killed}")
    elif run.died and run.killed not in KILL_REASONS:
        result.flag("kernel_died", "the kernel died (os._exit, a crash or a signal)")
    if run.memory_errors:
        result.flag("memory_limit", "a cell ran out of memory (MemoryError)")


def _answers(result: Result, notebook) -> None:
    """Written answers: 0 when left blank, else graded by hand (score None)."""
    from nbgrader.utils import determine_grade

    for cell in notebook.cells:
        info = plans.nbgrader_info(cell)
        if info.get("grade") and info.get("solution") and info.get("grade_id"):
            try:
                score, maximum = determine_grade(cell)
            except (KeyError, ValueError):
                score, maximum = None, float(info.get("points", 0))
            result.cells[info["grade_id"]] = CellResult(score, maximum, "answer")
