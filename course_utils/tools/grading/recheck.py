"""The authoritative re-check: each check call answered outside the kernel, judged here.

For every check call of the assignment's test cells (visible and hidden), the trusted grader

1. makes the cases from the call's seed (``Check.all_cases``; a ``QualityCheck``'s ``cases``,
   whose answers stay in ``case.private``) and writes their public parts, as data, to a
   folder the sandbox sees read-only (:class:`Reference`);
2. starts the re-check runner (``runner.py``) in the submission's jail, in a fresh process with
   a fresh copy of the submission's folder and home: it replays the instructor's locked cells
   and the student's exercise cells, and answers each call with the student's outputs, as data
   (:func:`run`);
3. compares those outputs with the reference's here (``Check.compare``; ``QualityCheck.score``
   and its thresholds; ``at_least``), and records a pass or the failure's message
   (:meth:`Reference.judge`).

Nothing the student's code does, in the kernel or in the runner, can change step 1 or 3: a
monkeypatched check, a patched ``torch.allclose``, an AST transformer or an object that says
it equals everything changes nothing outside the student's process. What the student's
process can do is return outputs; those count only when they are right.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course_utils.tools.grading import exchange
from course_utils.tools.grading.jail import Jail, Watchdog
from course_utils.tools.grading.plan import Plan, Step
from course_utils.tools.grading.reference import CallResult, Reference, fail
from course_utils.tools.grading.safefile import UnsafeFile, copy_regular, read_regular
from course_utils.tools.grading.sandbox import DATA_ROOT, PACKAGE_ROOT


class OutputTail(threading.Thread):
    """Drains a process's output, keeps its end, and calls ``too_much`` past ``limit`` bytes."""

    def __init__(self, stream, limit: int, too_much):
        super().__init__(daemon=True)
        self.stream, self.limit, self.too_much = stream, limit, too_much
        self.total, self.tail = 0, b""
        self.start()

    def run(self) -> None:
        while True:
            try:
                chunk = self.stream.read1(65536)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            self.total += len(chunk)
            self.tail = (self.tail + chunk)[-4000:]
            if self.total > self.limit:
                self.too_much()
                return

    def text(self) -> str:
        return self.tail.decode("utf-8", "replace")


@dataclass
class Attempt:
    done: bool
    last: str | None  # the last progress line's subject: "begin K" or "call ID"
    killed: str | None
    returncode: int | None
    output: str


def _progress(path: Path) -> list[str]:
    """The runner's progress lines. The runner can replace the file with anything (a FIFO, a
    link, a huge file): it is read without blocking, never through a link, 1 MB at most."""
    try:
        raw = read_regular(path, 1 << 20, tail=True)
    except OSError:
        return []
    lines = []
    for line in raw.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            lines.append(f"{parts[0]} {parts[1]}")
    return lines


def _run_once(jail: Jail, folder: Path, work: Path, home: Path, deadline: float,
              unit_timeout: float) -> Attempt:
    sandbox = jail.sandbox
    if sandbox.safe:
        script = f"{PACKAGE_ROOT}/course_utils/tools/grading/runner.py"
    else:
        script = str(sandbox.package / "tools" / "grading" / "runner.py")
    command = jail.command([sandbox.python, "-s", script, str(folder)], work=work, home=home,
                           exchange=folder, cpu_time=max(1.0, deadline - time.monotonic()) + 30,
                           environment={"MPLBACKEND": "Agg"})  # no display: draw nothing
    jail.reset()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               **jail.popen_options(work, home))
    tail = OutputTail(process.stdout, jail.limits.output,
                      lambda: jail.kill("output_limit", process.pid))
    watchdog = Watchdog(jail, lambda: process.pid, deadline)
    watchdog.start()
    seen, since = 0, time.monotonic()
    try:
        while process.poll() is None:
            time.sleep(0.05)
            lines = _progress(folder / "progress.txt")
            if len(lines) != seen:
                seen, since = len(lines), time.monotonic()
            elif lines and lines[-1].split()[0] in ("begin", "call", "start") and \
                    time.monotonic() - since > unit_timeout:
                jail.kill("timeout", process.pid)
        process.wait()
    finally:
        watchdog.stop()
        jail.cleanup(process.pid)
        tail.join(timeout=5)
    lines = _progress(folder / "progress.txt")
    killed = jail.killed
    last = next((line for line in reversed(lines) if line.split()[0] in ("begin", "call")),
                None)
    done = bool(lines) and lines[-1].startswith("done") and killed is None
    return Attempt(done, last, killed, process.returncode, tail.text())


def describe_stop(attempt: Attempt) -> str:
    reasons = {"timeout": "took longer than the time limit",
               "memory_limit": "used more memory than allowed",
               "process_limit": "started too many processes",
               "disk_limit": "wrote more to disk than allowed",
               "output_limit": "printed more output than allowed"}
    if attempt.killed:
        return f"it {reasons.get(attempt.killed, attempt.killed)} and was stopped"
    code = attempt.returncode
    if code is not None and code < 0:
        return f"the process was killed by signal {-code}"
    return f"the process exited (status {code})"


def run(jail: Jail, plan: Plan, reference: Reference, solutions: dict[str, str],
        tests: set[str], submission: Path | None, *, deadline: float,
        unit_timeout: float, replayed: list[Step] | None = None
        ) -> tuple[dict[str, CallResult], list[str]]:
    """Re-check the calls of the test cells ``tests`` (those that ran in the kernel).

    ``solutions``: the student's exercise cells by grade_id; ``submission``: a folder whose
    files the runner gets a fresh copy of; ``replayed``: the steps to run, in order (default:
    the plan's; the grader passes ``replay.steps`` of the submission, which adds the
    student's own cells that the graded code needs). Returns the result of each call and
    notes on what went wrong in the runner (a cell that killed it, ...).
    """
    plan_steps = replayed if replayed is not None else plan.steps
    steps, skip = [], set()
    for index, step in enumerate(plan_steps):
        data: dict[str, Any] = {"kind": step.kind, "grade_id": step.grade_id}
        if step.kind in ("cell", "student"):
            data["source"] = step.source
        elif step.kind == "solution":
            data["source"] = solutions.get(step.grade_id, step.source)
        else:
            data["calls"] = [{"id": c.id, "target": c.target, "kind": c.kind,
                              "argument": c.argument} for c in step.calls]
            if step.grade_id not in tests:
                skip.add(index)
        steps.append(data)
    last = max((i for i, s in enumerate(plan_steps) if s.kind == "test" and i not in skip),
               default=-1)
    skip |= set(range(last + 1, len(steps)))  # nothing after the last test matters
    pending = [c.id for i, s in enumerate(plan_steps) if s.kind == "test" and i not in skip
               for c in s.calls]
    results: dict[str, CallResult] = {}
    notes: list[str] = []
    if not pending:
        return results, notes
    calls = plan.calls
    folder = jail.folder("recheck")
    work, home = jail.folder("recheck-work"), jail.folder("recheck-home")
    if submission is not None:
        _copy_tree(submission, work, jail)
    data_root = DATA_ROOT if jail.sandbox.safe else str(reference.folder)
    reason = "the re-check did not run"
    for _attempt in range(4):
        for stale in folder.iterdir():  # the jail is empty now: nothing writes here
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink()
        program = {"steps": steps, "skip": sorted(skip), "skip_calls": sorted(results),
                   "data": data_root}
        write_new(folder / "program.json", json.dumps(program))
        jail.chown(folder / "program.json")
        attempt = _run_once(jail, folder, work, home, deadline, unit_timeout)
        for call_id in pending:
            if call_id in results:
                continue
            try:
                answer = exchange.read(folder, f"result-{call_id}", device_ok=_device_ok)
            except exchange.ExchangeError as error:
                if (folder / f"result-{call_id}.json").exists():
                    results[call_id] = fail(call_id, f"the re-check's answer is unreadable: "
                                                     f"{error}")
                continue
            results[call_id] = reference.judge(calls[call_id], answer)
        if attempt.done:
            break
        reason = describe_stop(attempt)
        if attempt.last is None:  # it never reached the first step
            notes.append(f"the re-check runner stopped before the first cell ({reason}): "
                         f"{attempt.output[-500:]}")
            break
        kind, subject = attempt.last.split(maxsplit=1)
        if kind == "call":
            if subject in calls and subject not in results:
                results[subject] = fail(subject, f"during the re-check of this test, {reason}")
        else:
            index = int(subject) if subject.isdigit() else -1
            if 0 <= index < len(plan_steps):
                step = plan_steps[index]
                if step.kind == "test":
                    for call in step.calls:
                        if call.id not in results:
                            results[call.id] = fail(call.id, f"during the re-check, {reason}")
                else:
                    notes.append(f"the re-check skipped cell {step.grade_id}: {reason}")
                skip.add(index)
            else:
                break
        if time.monotonic() > deadline - 1:
            reason = "the submission's time limit was reached"
            break
    for call_id in pending:
        if call_id not in results:
            results[call_id] = fail(call_id, f"not re-checked: {reason}")
    return results, notes


def write_new(path: Path, text: str) -> None:
    """Write a new file (never through a link the student's process left there)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _device_ok(device: str) -> bool:
    import torch

    return device.startswith("cuda") and torch.cuda.is_available()


def _copy_tree(source: Path, target: Path, jail: Jail, max_bytes: int = 256 << 20) -> None:
    """Copy the regular files and folders of ``source`` (never links, FIFOs or devices) for
    the jail's user."""
    budget = max_bytes
    for path in sorted(Path(source).rglob("*")):
        relative = path.relative_to(source)
        destination = target / relative
        if path.is_symlink():
            continue
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            jail.chown(destination)
        elif path.is_file():
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                budget -= copy_regular(path, destination, budget)
            except (UnsafeFile, FileExistsError):
                continue
            jail.chown(destination)
