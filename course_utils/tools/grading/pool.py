"""Worker processes that grade submissions, each under a deadline of its own.

:func:`run_jobs` keeps ``workers`` processes busy with one job each. It watches every job
from the coordinating process, so that nothing a submission does can stop the batch:

- a job that runs past its budget (the kernel's run, the re-check and what is left, all
  together) has its worker killed and replaced; the job is recorded ``grader_timeout``;
- a worker that dies (killed, out of memory) takes only its own job with it: that job is
  tried once more on a fresh worker, then recorded ``internal_error``.

Workers are started with ``spawn`` (a fresh interpreter: nothing of the coordinating process
is inherited) and send back the :class:`~course_utils.tools.grading.submission.Result`, which is
data computed by the trusted grader, never an object built by a student's code.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from course_utils.tools.grading import submission as submissions

#: Seconds between two looks at the workers when none has finished.
POLL = 1.0


def _worker(connection: Connection, gpu: bool, grade: Callable) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinating process's
    if not gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    torch.set_num_threads(1)
    connection.send("ready")  # the budget of a job starts now, not while torch loads
    while True:
        try:
            job = connection.recv()
        except EOFError:
            return
        if job is None:
            return
        connection.send(grade(job))


@dataclass
class _Worker:
    process: Any
    connection: Connection
    job: tuple[int, submissions.Job] | None = None
    started: float = 0.0
    ready: bool = False

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.connection.close()


@dataclass
class Pool:
    """``workers`` grading processes (see the module's docstring)."""

    workers: int
    gpu: bool
    grade: Callable[[submissions.Job], submissions.Result] = submissions.grade
    running: list[_Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.context = multiprocessing.get_context("spawn")

    def start(self) -> _Worker:
        mine, theirs = self.context.Pipe()
        process = self.context.Process(target=_worker, args=(theirs, self.gpu, self.grade),
                                       daemon=True)
        process.start()
        theirs.close()
        worker = _Worker(process, mine)
        self.running.append(worker)
        return worker

    def replace(self, worker: _Worker) -> None:
        worker.kill()
        self.running.remove(worker)

    def close(self) -> None:
        for worker in list(self.running):
            if worker.job is None and worker.process.is_alive():
                try:
                    worker.connection.send(None)
                    worker.process.join(timeout=5)
                except OSError:
                    pass
            self.replace(worker)


def failed(job: submissions.Job, reason: str, detail: str) -> submissions.Result:
    """The result of a job the pool had to give up on."""
    result = submissions.Result(job.assignment, job.student, "failed")
    result.flag(reason, detail)
    return result


def run_jobs(jobs: list[submissions.Job], workers: int, gpu: bool, on_result, *,
             budget: Callable[[submissions.Job], float],
             grade: Callable[[submissions.Job], submissions.Result] = submissions.grade) -> bool:
    """Grade ``jobs`` in ``workers`` processes; call ``on_result(job, result)`` as each ends
    (in the order they end). ``budget(job)`` is the seconds a job may take once a worker has
    it. ``on_result`` returning False stops the batch: jobs not started are dropped. Return
    False when stopped."""
    todo = list(enumerate(jobs))[::-1]  # popped from the end: in order
    tries: dict[int, int] = {}
    pool = Pool(max(1, min(workers, len(jobs))), gpu, grade)
    try:
        while todo or any(w.job for w in pool.running):
            while len(pool.running) < pool.workers and \
                    len(todo) > sum(w.job is None for w in pool.running):
                pool.start()
            for worker in list(pool.running):
                if worker.ready and worker.job is None and todo:
                    worker.job, worker.started = todo.pop(), time.monotonic()
                    try:
                        worker.connection.send(worker.job[1])
                    except OSError:  # it died while idle: its job goes back to the queue
                        todo.append(worker.job)
                        pool.replace(worker)
            ready = wait([w.connection for w in pool.running] +
                         [w.process.sentinel for w in pool.running], timeout=POLL)
            for worker in list(pool.running):
                message = None
                if worker.connection in ready:
                    try:
                        message = worker.connection.recv()
                    except (EOFError, OSError):
                        message = None
                if message == "ready":
                    worker.ready = True
                    continue
                if worker.job is None:
                    if message is None and not worker.process.is_alive():
                        pool.replace(worker)  # died before it had a job
                    continue
                index, job = worker.job
                if message is None and not worker.process.is_alive():
                    pool.replace(worker)
                    tries[index] = tries.get(index, 0) + 1
                    if tries[index] <= 1:
                        todo.append((index, job))
                        continue
                    result = failed(job, "internal_error", "the grading worker died twice")
                elif message is None and time.monotonic() - worker.started > budget(job):
                    pool.replace(worker)
                    result = failed(job, "grader_timeout",
                                    f"grading took longer than its budget "
                                    f"({budget(job):.0f} s): the grading worker was killed "
                                    f"and replaced")
                elif message is None:
                    continue
                else:
                    result, worker.job = message, None
                if on_result(job, result) is False:
                    return False
    finally:
        pool.close()
    return True
