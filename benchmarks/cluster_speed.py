"""Grading on a Dask cluster against the local path: the speed-up of 2 workers over 1, and the
cluster path's overhead per submission (docs/instructors.md, "Grading on a Dask cluster").

    python benchmarks/cluster_speed.py [--copies 8] [--assignment 00_welcome]

Makes a scratch course with COPIES copies of the assignment's solution as submissions, then
grades them (``--no-preflight``, wall time of the whole ``grade`` command) four ways: locally
with ``--jobs 1`` and ``--jobs 2``, on a real ``dask scheduler`` with one ``dask worker``, and
with two. Run it
on an otherwise idle machine; it prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_utils.tools.grading.nbgrader import make_course  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def course_with_copies(folder: Path, assignment: str, copies: int) -> Path:
    course = make_course(folder, ROOT, [assignment])
    solution = course / "solutions" / assignment / f"{assignment}.ipynb"
    for k in range(copies):
        target = course / "submitted" / f"student{k:02d}" / assignment
        target.mkdir(parents=True)
        shutil.copy2(solution, target / f"{assignment}.ipynb")
    return course


def grade(course: Path, assignment: str, *extra: str) -> float:
    start = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-m", "course_utils", "grade", str(course / "submitted"), "--course",
         str(course), "--assignment", assignment, "--no-preflight", "--no-progress", *extra],
        cwd=course, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if process.returncode != 0:
        raise SystemExit(process.stdout[-3000:] + process.stderr[-3000:])
    return time.perf_counter() - start


def on_cluster(course: Path, assignment: str, workers: int) -> float:
    port, groups = free_port(), []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        groups.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", str(port), "--dashboard-address", ":0"], cwd=course, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        for _ in range(workers):
            groups.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}",
                 "--nthreads", "1", "--dashboard-address", ":0"], cwd=course, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        return grade(course, assignment, "--scheduler", f"tcp://127.0.0.1:{port}")
    finally:
        for process in groups:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--assignment", default="00_welcome")
    args = parser.parse_args()
    times = {}
    with tempfile.TemporaryDirectory() as scratch:
        for label, run in [("local, --jobs 1", lambda c: grade(c, args.assignment, "--jobs", "1")),
                           ("local, --jobs 2", lambda c: grade(c, args.assignment, "--jobs", "2")),
                           ("cluster, 1 worker", lambda c: on_cluster(c, args.assignment, 1)),
                           ("cluster, 2 workers", lambda c: on_cluster(c, args.assignment, 2))]:
            course = course_with_copies(Path(scratch) / label.replace(" ", "_").replace(",", ""),
                                        args.assignment, args.copies)
            times[label] = run(course)
            print(f"{label}: {times[label]:.1f} s", flush=True)
    n = args.copies
    print(f"\n| {n} submissions of {args.assignment} | wall time | per submission |")
    print("|---|---:|---:|")
    for label, seconds in times.items():
        print(f"| {label} | {seconds:.1f} s | {seconds / n:.1f} s |")
    one, two = times["cluster, 1 worker"], times["cluster, 2 workers"]
    print(f"\nspeed-up of 2 workers over 1: {one / two:.2f}×; overhead of the cluster path: "
          f"{(one - times['local, --jobs 1']) / n:+.1f} s per submission")


if __name__ == "__main__":
    main()
