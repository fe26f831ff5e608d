"""Grading on a Dask distributed cluster: each submission graded on a worker, recorded here.

``python -m course_utils grade ... --scheduler tcp://HOST:8786`` (or ``--scheduler auto``, a
local cluster) replaces the local worker processes of ``pool.py`` by the workers of a Dask
cluster (Rocklin 2015, *Dask: parallel computation with blocked algorithms and task
scheduling*; ``distributed``, the ``cluster`` extra). What changes is only *where* a
submission is graded:

1. The coordinating process (the ``grade`` command) computes the course's fingerprint (the
   package version and a hash of ``solutions/``, ``nbgrader_config.py`` and the code of the
   ``course_utils`` it runs) and asks every worker for its own (``client.run``). A worker that
   runs another version of the course is refused, by name, and never used; with none left the
   command stops.
2. Each job travels as a *parcel* of plain data: the job's fields, the submitted notebook's
   bytes, the files the kernel would see beside it (the local path's ``copy_files`` rules),
   the released notebook and the gradebook snapshot nbgrader's sanitizers read. A worker
   has none of the coordinator's files; it grades from its own course folder, whose
   fingerprint matched.
3. On the worker, :func:`grade_parcel` unpacks the parcel in a private folder and grades it
   with ``submission.grade`` in the worker's own grading interpreter under the same budget
   (the rules of ``pool.run_jobs``): the same sandbox, the same re-check, the same reason
   codes as the local path. It returns the ``Result`` as a dict: data computed by the
   trusted grader, never an object a student's code built.
4. The coordinator alone records (gradebook, CSV, JSON report, feedback), once per
   submission, in the order results arrive.

Faults. A worker that dies mid-submission loses nothing: the scheduler gives its task to
another worker (after ``distributed.scheduler.allowed-failures`` deaths the task fails and
the submission is recorded ``internal_error``, for ``--resume`` to grade again). If the
scheduler goes away, the command stops with a message; what was recorded stays, and
``--resume`` grades the rest.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from pathlib import Path

from course_utils.tools.grading import sanitize
from course_utils.tools.grading import submission as submissions
from course_utils.tools.grading.jail import make_workspace

#: What the fingerprint hashes in the course folder (the package's code is hashed where it
#: is imported from).
FINGERPRINTED = ("solutions", "nbgrader_config.py")
#: Seconds the coordinator waits for the scheduler before it gives up.
CONNECT_TIMEOUT = 30.0
#: Seconds between two looks at the futures (and at the scheduler).
POLL = 1.0


class ClusterError(RuntimeError):
    """The cluster cannot grade: unreachable, gone, or no worker with this course."""


class VersionMismatch(RuntimeError):
    """Raised on a worker whose course is not the coordinator's."""


# --- the course version --------------------------------------------------------------------------


def course_fingerprint(course: Path) -> str:
    """``"<version>-<sha256 prefix>"``: the package version and a hash of the files of the
    course at ``course`` (FINGERPRINTED) and of the ``course_utils`` code this process runs
    (checks and grader included); paths and bytes, caches left out."""
    import course_utils

    package = Path(course_utils.__file__).resolve().parent
    digest = hashlib.sha256()
    for label, root in [*((name, Path(course) / name) for name in FINGERPRINTED),
                        ("course_utils", package)]:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            relative = label if path == root else f"{label}/{path.relative_to(root).as_posix()}"
            if "__pycache__" in relative or ".ipynb_checkpoints" in relative \
                    or relative.endswith(".pyc"):
                continue
            digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{course_utils.__version__}-{digest.hexdigest()[:16]}"


def worker_course() -> Path:
    """The course folder of this process: the one it was started in (``repository_root``),
    else the one holding the imported ``course_utils`` package (an editable install)."""
    from course_utils.tools.paths import repository_root

    try:
        return repository_root()
    except FileNotFoundError:
        import course_utils

        folder = Path(course_utils.__file__).resolve().parent.parent
        if (folder / "nbgrader_config.py").is_file() and (folder / "solutions").is_dir():
            return folder
        raise


def worker_fingerprint() -> str:
    """This worker's course fingerprint; a sentence when it has none."""
    try:
        return course_fingerprint(worker_course())
    except FileNotFoundError as error:
        return f"no course folder ({error})"


def worker_status() -> dict:
    """What the coordinator asks each worker (``client.run``): its course fingerprint and
    whether it has the grader's sandbox (bubblewrap)."""
    from course_utils.tools.grading.sandbox import find_bwrap

    return {"fingerprint": worker_fingerprint(), "sandbox": find_bwrap() is not None}


# --- parcels: a job as plain data ----------------------------------------------------------------


def _pack_folder(folder: Path | None) -> dict[str, str]:
    """The regular files under ``folder``, by relative path, base64-encoded."""
    if folder is None or not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): base64.b64encode(p.read_bytes()).decode()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _unpack_folder(files: dict[str, str], target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        path = (target / relative).resolve()
        if not path.is_relative_to(target.resolve()):  # never outside the parcel's folder
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(content))
    return target


def pack(job: submissions.Job, scratch: Path) -> dict:
    """``job`` as a parcel: its fields, and every file it needs as bytes.

    Only called for a readable notebook (``sanitize.load`` accepted it); the files beside it
    are those the local path would give the kernel (``submission._submission_files``).
    """
    scratch.mkdir(parents=True, exist_ok=True)
    beside = submissions._submission_files(replace(job, extra=None),
                                           Path(tempfile.mkdtemp(dir=scratch)) / "files")
    db = job.db_url.removeprefix("sqlite:///")
    return {
        "job": {f.name: getattr(job, f.name) for f in fields(job) if f.name != "settings"},
        "settings": asdict(job.settings),
        "notebook": base64.b64encode(Path(job.notebook).read_bytes()).decode(),
        "folder": _pack_folder(beside),
        "release": base64.b64encode(Path(job.release).read_bytes()).decode(),
        "extra": _pack_folder(Path(job.extra) if job.extra else None),
        "gradebook": base64.b64encode(Path(db).read_bytes()).decode(),
    }


def grade_parcel(parcel: dict, fingerprint: str, budget: float) -> dict:
    """Grade a parcel on this worker exactly as the local path does; return the Result as a
    dict. Raises VersionMismatch when this worker's course is not ``fingerprint``.

    The grading runs in this worker's grading process (:class:`_GradingProcess`) under
    ``budget`` seconds, as in ``pool.py``.
    """
    from course_utils.tools.grading.sandbox import find_bwrap

    mine = worker_fingerprint()
    if mine != fingerprint:
        raise VersionMismatch(f"this worker runs course {mine}, the coordinator {fingerprint}")
    if not parcel["settings"]["unsafe"] and find_bwrap() is None:
        raise RuntimeError("this worker has no bubblewrap: it cannot grade safely")
    course = worker_course()
    fields_ = parcel["job"]
    workspace = make_workspace("grade-dask-")
    try:
        here = workspace / "parcel"
        notebook = here / "submission" / f"{fields_['assignment']}.ipynb"
        folder = _unpack_folder(parcel["folder"], here / "submission")
        notebook.write_bytes(base64.b64decode(parcel["notebook"]))
        release = here / "release" / f"{fields_['assignment']}.ipynb"
        release.parent.mkdir(parents=True)
        release.write_bytes(base64.b64decode(parcel["release"]))
        extra = _unpack_folder(parcel["extra"], here / "extra") if parcel["extra"] else None
        db = here / "gradebook.db"
        db.write_bytes(base64.b64decode(parcel["gradebook"]))
        settings = submissions.Settings(**{**parcel["settings"], "course": str(course)})
        source = course / "solutions" / fields_["assignment"] / f"{fields_['assignment']}.ipynb"
        job = submissions.Job(
            fields_["assignment"], fields_["student"], str(notebook), str(folder), str(source),
            str(release), str(extra) if extra else None, f"sqlite:///{db}", str(workspace),
            settings)
        return asdict(_grade_in_the_grading_process(job, workspace, budget))
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _grade_in_the_grading_process(job: submissions.Job, workspace: Path,
                                  budget: float) -> submissions.Result:
    """``submission.grade(job)`` in this worker's grading process, killed past ``budget``
    seconds (``grader_timeout``); a process that dies is replaced and the job tried once
    more, then ``internal_error`` (the rules of ``pool.run_jobs``)."""
    import json

    from course_utils.tools.grading.pool import failed

    job_file, result_file = workspace / "job.json", workspace / "result.json"
    job_file.write_text(json.dumps(asdict(job)))
    for _ in range(2):
        result_file.unlink(missing_ok=True)
        ended = _GRADER.grade(job_file, result_file, budget, gpu=job.settings.gpu)
        if ended == "timeout":
            return failed(job, "grader_timeout", f"grading took longer than its budget "
                                                 f"({budget:.0f} s): the grading process was "
                                                 "killed")
        if ended == "done" and result_file.is_file():
            return result_from_dict(json.loads(result_file.read_text()))
    return failed(job, "internal_error", "the grading process died twice")


class _GradingProcess:
    """The grading interpreter of one Dask worker process (``python -m
    course_utils.tools.grading.cluster --serve``), kept between submissions as ``pool.py``
    keeps its workers: torch and the grader load once, and a submission's budget starts when
    they have. A Dask worker cannot be its parent through multiprocessing (it is a daemonic
    process), so it is a plain subprocess speaking one line per job on its stdin/stdout."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.gpu = False
        self.lock = threading.Lock()

    def grade(self, job_file: Path, result_file: Path, budget: float, gpu: bool) -> str:
        """``"done"``, ``"timeout"`` (the process was killed) or ``"died"``."""
        with self.lock:
            if self.process is None or self.process.poll() is not None or gpu != self.gpu:
                self._start(gpu)
            try:
                self.process.stdin.write(f"{job_file}\t{result_file}\n")
                self.process.stdin.flush()
            except OSError:
                self.kill()
                return "died"
            if not select.select([self.process.stdout], [], [], budget)[0]:
                self.kill()
                return "timeout"
            if self.process.stdout.readline().strip() != "done":
                self.kill()
                return "died"
            return "done"

    def _start(self, gpu: bool) -> None:
        self.kill()
        env = dict(os.environ, **({} if gpu else {"CUDA_VISIBLE_DEVICES": ""}))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "course_utils.tools.grading.cluster", "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env, start_new_session=True)
        self.gpu = gpu
        self.process.stdout.readline()  # "ready": torch and the grader are loaded

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None


_GRADER = _GradingProcess()


def _serve() -> None:
    """The grading process: load once, then grade each job named on stdin; answer "done".
    Anything else written to stdout while grading goes to stderr, never into the answers."""
    import json

    import torch

    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    torch.set_num_threads(1)
    print("ready", file=answers, flush=True)
    for line in sys.stdin:
        job_file, result_file = line.rstrip("\n").split("\t")
        data = json.loads(Path(job_file).read_text())
        job = submissions.Job(**{**data, "settings": submissions.Settings(**data["settings"])})
        Path(result_file).write_text(json.dumps(asdict(submissions.grade(job))))
        print("done", file=answers, flush=True)


def result_from_dict(data: dict) -> submissions.Result:
    cells = {name: submissions.CellResult(**cell) for name, cell in data["cells"].items()}
    return submissions.Result(**{**data, "cells": cells})


# --- the coordinator -----------------------------------------------------------------------------


def connect(scheduler: str, workers: int, gpu: bool):
    """A ``distributed.Client``: to ``scheduler``, or to a new local cluster of ``workers``
    processes for ``"auto"`` (one thread each; a GPU resource each when ``gpu``)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise ClusterError("grading on a cluster needs Dask's distributed package: "
                           "pip install -e \".[cluster]\"") from error
    try:
        if scheduler == "auto":
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   resources={"GPU": 1} if gpu else None,
                                   dashboard_address=None)
            return Client(cluster)
        return Client(scheduler, timeout=CONNECT_TIMEOUT)
    except OSError as error:  # includes TimeoutError
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None


def usable_workers(client, fingerprint: str, unsafe: bool, out) -> list[str]:
    """The workers that run this course version and have the sandbox (unless ``unsafe``);
    the others are named and refused."""
    found = client.run(worker_status)  # {address: {"fingerprint": ..., "sandbox": ...}}
    good = []
    for address, status in sorted(found.items()):
        if status["fingerprint"] != fingerprint:
            print(f"refused worker {address}: it runs course {status['fingerprint']}, this "
                  f"command {fingerprint} (install the course at the same commit there)",
                  file=out)
        elif not (status["sandbox"] or unsafe):
            print(f"refused worker {address}: it has no bubblewrap, so it cannot grade "
                  "safely (install bubblewrap there)", file=out)
        else:
            good.append(address)
    if not good:
        raise ClusterError("no worker of the cluster can grade this course version "
                           f"({fingerprint})" if found else "the cluster has no workers")
    return good


def run_jobs_on_cluster(jobs: list[submissions.Job], client, course: Path, gpu: bool,
                        on_result, *, budget: Callable[[submissions.Job], float],
                        out) -> bool:
    """Grade ``jobs`` on the cluster of ``client``; ``on_result(job, result)`` as each ends,
    here, once per job (as ``pool.run_jobs``: returning False stops the batch and cancels
    what is left; return False when stopped). Raises ClusterError if the scheduler goes."""
    from distributed import wait

    fingerprint = course_fingerprint(course)
    workers = usable_workers(client, fingerprint, bool(jobs) and jobs[0].settings.unsafe, out)
    scratch = Path(tempfile.mkdtemp(prefix="grade-parcels-"))
    futures = {}
    try:
        for index, job in enumerate(jobs):
            loaded = sanitize.load(Path(job.notebook) if job.notebook else None)
            if loaded.notebook is None:  # nothing to run: the local grader decides at once
                futures[index] = submissions.grade(job)
                continue
            futures[index] = client.submit(
                grade_parcel, pack(job, scratch), fingerprint, budget(job),
                key=f"grade-{job.assignment}-{job.student}-{os.urandom(4).hex()}",
                workers=workers, allow_other_workers=False, pure=False,
                resources={"GPU": 1} if gpu else None)
        pending = dict(futures)
        while pending:
            for index, future in list(pending.items()):
                if isinstance(future, submissions.Result):
                    result = future
                elif future.status == "finished":
                    result = result_from_dict(future.result())
                elif future.status in ("error", "cancelled"):
                    _check_scheduler(client)  # a lost scheduler cancels every future
                    result = _failed_task(jobs[index], future)
                else:
                    continue
                del pending[index]
                if on_result(jobs[index], result) is False:
                    client.cancel([f for f in pending.values()
                                   if not isinstance(f, submissions.Result)])
                    return False
            if pending:
                _check_scheduler(client)
                try:
                    wait([f for f in pending.values()
                          if not isinstance(f, submissions.Result)],
                         timeout=POLL, return_when="FIRST_COMPLETED")
                except TimeoutError:  # none finished within POLL
                    pass
                except Exception as error:  # FuturesCancelledError: the connection is lost
                    raise ClusterError(_GONE.format(f"{type(error).__name__}")) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return True


def _failed_task(job: submissions.Job, future) -> submissions.Result:
    try:
        error = future.exception(timeout=5)
    except Exception as cause:  # the scheduler went away while we asked
        error = cause
    result = submissions.Result(job.assignment, job.student, "failed")
    kind = type(error).__name__
    if kind == "KilledWorker":
        result.flag("internal_error", "the Dask workers grading it died too often "
                                      f"({error}); --resume grades it again")
    else:
        result.flag("internal_error", f"grading on the cluster failed: {kind}: {error}")
    return result


_GONE = ("the Dask scheduler is gone ({}): what was graded is recorded; run the command "
         "again with --resume to grade the rest")


def _check_scheduler(client) -> None:
    """Raise ClusterError once the client has lost its scheduler: the futures it held are
    cancelled then, even if it reconnects."""
    if client.status != "running":
        raise ClusterError(_GONE.format(f"client {client.status}"))


def close(client) -> None:
    """Close the client, and its local cluster if it made one."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


__all__ = ["ClusterError", "VersionMismatch", "close", "connect", "course_fingerprint",
           "grade_parcel", "pack", "result_from_dict", "run_jobs_on_cluster", "usable_workers",
           "worker_fingerprint", "worker_status"]


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:  # a worker's _GradingProcess
    _serve()
