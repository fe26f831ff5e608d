"""``python -m course_utils grade``: grade a class in one command.

    python -m course_utils grade SUBMISSIONS [--assignment NN_name ...] [--jobs N]

SUBMISSIONS is nbgrader's ``submitted/<student>/<assignment>/`` folder (the course's own or a
copy) or a flat folder of ``<student>.ipynb`` files (an LMS export; then name one assignment).
For each assignment the command

1. registers it in the course's gradebook (``nbgrader generate_assignment`` into a scratch
   release folder: ``notebooks/`` is not touched) and checks that its test cells follow the
   rules the re-check needs (``plan.py``);
2. copies the submissions into the course's ``submitted/`` folder (when they are elsewhere);
3. grades the instructor's own solution first, as a check of this machine's set-up, while the
   worker processes (``--jobs``, ``pool.py``) grade the submissions, each in its own sandbox
   (``submission.py``) and under a deadline kept from outside; nothing is recorded unless
   the solution gets full marks;
4. records each result as it comes (``record.py``) in nbgrader's gradebook and
   ``autograded/`` folder (so formgrader can show it for the written answers), writes the
   student's feedback HTML (``feedback/``, with no hidden test and no student script in
   it), and rewrites a CSV of scores and a JSON report of every decision;
5. ends with a summary: graded, flagged (with reason codes), failed.

The batch never stops early: a submission that crashes, hangs or lies is recorded with its
reason codes and the next one is graded. A batch stopped half-way keeps what it recorded;
``--resume`` grades the rest.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from course_utils.tools.grading import cluster as clusters
from course_utils.tools.grading import plan as plans
from course_utils.tools.grading import submission as submissions
from course_utils.tools.grading.course import (
    Entry,
    copy_submission,
    course_assignments,
    discover,
    preflight_notebook,
    prepare_assignment,
)
from course_utils.tools.grading.jail import make_workspace
from course_utils.tools.grading.pool import run_jobs
from course_utils.tools.grading.record import Recorder, notebook_digest
from course_utils.tools.grading.sandbox import GiB, Limits, Sandbox, SandboxUnavailable

PREFLIGHT = "__solution__"


# --- the command ---------------------------------------------------------------------------------


@dataclass
class Options:
    submissions: Path
    assignments: list[str] | None = None
    jobs: int | None = None
    course: Path | None = None
    output: Path | None = None
    cell_timeout: float | None = None
    timeout: float | None = None
    memory_gb: float = 6.0
    device: str = "auto"
    unsafe: bool = False
    feedback: bool = True
    preflight: bool = True
    progress: bool = True
    resume: bool = False
    grading_timeout: float | None = None  # default: 2 × timeout + 600 s
    timestamp_tolerance: float = 600.0
    scheduler: str | None = None  # a Dask scheduler's address, or "auto" (cluster.py)


def grades_unsafely(options: Options, sandbox: Sandbox) -> bool:
    """Whether submissions run without a sandbox. Here: when this machine has none (which
    ``Sandbox.detect`` allows only with --unsafe). On a cluster: only with --unsafe, since
    the workers' sandboxes count, never this machine's lack of one."""
    return options.unsafe if options.scheduler else not sandbox.safe


def default_jobs(memory: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram = 8 * GiB
    return max(1, min(cores, int(ram // (memory + 2 * GiB))))


def config_cell_timeout(course: Path) -> float:
    """``Execute.timeout`` of the course's nbgrader_config.py (900 s in this course)."""
    text = (course / "nbgrader_config.py").read_text() if (course / "nbgrader_config.py"). \
        is_file() else ""
    match = re.search(r"^c\.Execute\.timeout\s*=\s*(\d+)", text, re.M)
    return float(match.group(1)) if match else 900.0


def main(options: Options) -> int:
    from course_utils.tools.paths import repository_root

    out = sys.stdout
    course = Path(options.course).resolve() if options.course else repository_root()
    known = course_assignments(course)
    wanted = options.assignments or None
    unknown = [a for a in wanted or [] if a not in known]
    if unknown:
        print(f"unknown assignment(s): {', '.join(unknown)} (the course has: "
              f"{', '.join(known)})", file=out)
        return 2
    if options.scheduler:  # the workers have the GPUs (and the sandboxes) that count
        gpu = options.device == "cuda"
    else:
        gpu = options.device == "cuda" or (options.device == "auto" and _has_cuda())
    memory = int(options.memory_gb * GiB)
    try:
        private = [course / "solutions", course / "nbgrader_config.py", course / "gradebook.db"]
        sandbox = Sandbox.detect(unsafe=options.unsafe or bool(options.scheduler), gpu=gpu,
                                 forbidden=private, private=[course])
    except SandboxUnavailable as error:
        print(error, file=out)
        return 2
    unsafe = grades_unsafely(options, sandbox)
    if unsafe:
        print("WARNING: grading WITHOUT a sandbox (--unsafe): every submission runs with your "
              "privileges and can read or change anything you can.", file=out)
    try:
        entries, warnings = discover(Path(options.submissions), known, wanted)
    except (FileNotFoundError, ValueError) as error:
        print(error, file=out)
        return 2
    for warning in warnings:
        print(f"note: {warning}", file=out)
    if not entries:
        print(f"no submissions found in {options.submissions}", file=out)
        return 1
    jobs = options.jobs or default_jobs(memory)
    settings = submissions.Settings(
        course=str(course), cell_timeout=options.cell_timeout or config_cell_timeout(course),
        timeout=options.timeout or 3600.0,
        limits=asdict(Limits(memory=memory)), threads=1, gpu=gpu, unsafe=unsafe)
    output = Path(options.output).resolve() if options.output else course / "grades"
    recorder = Recorder(course, output, options.feedback, options.timestamp_tolerance)
    status = 0
    workspace = make_workspace("grade-")
    client = None
    try:
        if options.scheduler:
            client = clusters.connect(options.scheduler, jobs, gpu)
        for assignment in sorted({e.assignment for e in entries}):
            todo = [e for e in entries if e.assignment == assignment]
            code = grade_assignment(course, assignment, todo, workspace, settings, jobs,
                                    recorder, options, out, client)
            status = max(status, code)
    except clusters.ClusterError as error:
        print(f"\nstopped: {error}", file=out)
        return 2
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                clusters.close(client)
        shutil.rmtree(workspace, ignore_errors=True)
    return status


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def grade_assignment(course: Path, assignment: str, entries: list[Entry], workspace: Path,
                     settings: submissions.Settings, workers: int, recorder: Recorder,
                     options: Options, out, client=None) -> int:
    source = course / "solutions" / assignment / f"{assignment}.ipynb"
    plan = plans.build(source, assignment)
    if plan.problems:
        print(f"{assignment}: its test cells cannot be re-checked outside the kernel, so it "
              "is not graded. Fix these cells (see docs/instructors.md, 'Rules for notebook "
              "authors'):", file=out)
        for problem in plan.problems:
            print(f"  - {problem}", file=out)
        return 2
    try:
        release, db_url = prepare_assignment(course, assignment, workspace)
    except Exception as error:
        print(f"{assignment}: could not register it in the gradebook: {error}", file=out)
        return 2
    extra = release.parent  # what students were given besides the notebook (never solutions/)
    entries = [copy_submission(e, course) for e in entries]
    entries = [replace(e, digest=notebook_digest(e.notebook)) for e in entries]
    if options.resume:
        entries = resume(entries, assignment, recorder, out)
    first = submissions.Job(assignment, PREFLIGHT, None, None, str(source), str(release),
                            str(extra), db_url, str(workspace), settings)
    jobs = [replace(first, student=e.student, notebook=str(e.notebook) if e.notebook else None,
                    folder=str(e.folder) if e.folder else None) for e in entries]
    if options.preflight:
        notebook = preflight_notebook(source, release, workspace / f"{assignment}-solution.ipynb")
        jobs.insert(0, replace(first, notebook=str(notebook)))
    by_student = {e.student: e for e in entries}
    began = time.monotonic()
    held: list[tuple[submissions.Result, Entry]] = []
    state = {"ready": not options.preflight, "failed": None}
    counts: Counter = Counter()
    progress = _progress(len(entries), assignment, options.progress)

    def on_result(job: submissions.Job, result: submissions.Result) -> None:
        if job.student == PREFLIGHT:
            lost = {k: c for k, c in result.cells.items()
                    if c.kind == "test" and c.score != c.max_score}
            if result.status != "graded" or lost:
                state["failed"] = result
                return False
            state["ready"] = True
            for held_result, held_entry in held:
                _record(held_result, held_entry)
            held.clear()
            return
        entry = by_student[job.student]
        if not state["ready"]:
            held.append((result, entry))
            return
        _record(result, entry)

    def _record(result: submissions.Result, entry: Entry) -> None:
        if entry.note:
            result.details.append(entry.note)
        try:
            recorder.record(result, entry)
        except Exception as error:
            result.status = "failed"
            result.flag("internal_error", f"recording failed: {type(error).__name__}: {error}")
            with contextlib.suppress(Exception):
                recorder.write_reports(assignment, final=False)
        counts[result.status] += 1
        progress.update(1)
        progress.set_postfix_str(f"flagged {counts['flagged']}, failed {counts['failed']}")

    budget = options.grading_timeout or 2 * settings.timeout + 600
    if client is not None:
        try:
            completed = clusters.run_jobs_on_cluster(jobs, client, course, settings.gpu,
                                                     on_result, budget=lambda job: budget,
                                                     out=out)
        except clusters.ClusterError:
            progress.close()
            with contextlib.suppress(Exception):
                recorder.write_reports(assignment, final=False)
            raise
    else:
        completed = run_jobs(jobs, workers, settings.gpu, on_result, budget=lambda job: budget)
    if not completed:
        progress.close()
        failed = state["failed"]
        print(f"\n{assignment}: NOT GRADED. The instructor's own solution does not get full "
              f"marks on this machine, so the set-up is broken (nothing was recorded):",
              file=out)
        for reason in failed.reasons:
            print(f"  reason: {reason}", file=out)
        for detail in failed.details[:10]:
            print(f"  {detail[:400]}", file=out)
        for name, cell in failed.cells.items():
            if cell.kind == "test" and cell.score != cell.max_score:
                print(f"  {name}: {cell.score}/{cell.max_score} ({cell.kernel}, "
                      f"re-check {cell.recheck}) {'; '.join(cell.messages)[:400]}", file=out)
        return 2
    progress.close()
    csv_path, json_path = recorder.write_reports(assignment)
    _summary(assignment, recorder.results.get(assignment, {}).values(), time.monotonic() - began,
             workers, csv_path, json_path, recorder, out)
    return 1 if any("internal_error" in r.reasons or "grader_timeout" in r.reasons
                    for r in recorder.results.get(assignment, {}).values()) else 0


#: Reasons for which ``--resume`` grades a submission again (the grader failed, not the student).
REGRADE = ("internal_error", "grader_timeout")


def resume(entries: list[Entry], assignment: str, recorder: Recorder, out) -> list[Entry]:
    """The entries the last run's report does not hold yet (or holds for another version of
    the notebook, or as a failure of the grader); the others are kept as they were."""
    previous = recorder.previous(assignment)
    todo, kept = [], 0
    for entry in entries:
        before = previous.get(entry.student)
        if isinstance(before, dict) and before.get("notebook_sha256") == entry.digest and \
                not set(before.get("reasons", [])) & set(REGRADE):
            try:
                recorder.keep(assignment, entry.student, before)
                kept += 1
                continue
            except (KeyError, TypeError, ValueError):
                pass
        todo.append(entry)
    print(f"{assignment}: --resume: {kept} submission(s) already graded, {len(todo)} to "
          "grade", file=out)
    return todo


def _progress(total: int, assignment: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"grading {assignment}", unit="submission",
                disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def _summary(assignment: str, results: Iterable[submissions.Result], seconds: float,
             workers: int, csv_path: Path, json_path: Path, recorder: Recorder, out) -> None:
    results = sorted(results, key=lambda r: r.student)
    by_status = Counter(r.status for r in results)
    print(f"\n{assignment}: {len(results)} submission(s) in {seconds:.0f} s with {workers} "
          f"job(s): {by_status['graded']} graded, {by_status['flagged']} flagged, "
          f"{by_status['failed']} failed", file=out)
    for status in ("flagged", "failed"):
        reasons = Counter(reason for r in results if r.status == status for reason in r.reasons)
        if reasons:
            listed = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
            print(f"  {status}: {listed}", file=out)
    for result in results:
        if result.status != "graded":
            print(f"    {result.student}: {result.status} ({', '.join(result.reasons)}) "
                  f"{result.score:g}/{result.max_score:g}", file=out)
    if recorder.feedback_errors:
        print(f"  feedback could not be written for {len(recorder.feedback_errors)} "
              f"student(s): {recorder.feedback_errors[0]}", file=out)
    print(f"  scores: {csv_path}\n  report: {json_path}\n  feedback: "
          f"{recorder.course / 'feedback'}/<student>/{assignment}/", file=out)
