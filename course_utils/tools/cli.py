"""The command line: ``python -m course_utils <command>``.

    release [NAME ...] [--check]   rebuild solutions/*.ipynb and notebooks/ from the sources
    doctor                         is this installation ready for the course?
    check NOTEBOOK                 run your notebook and score its tests, without nbgrader
    bench [NAME ...] [--check]     time, memory and learning figures of the solution notebooks
    grade SUBMISSIONS [-a NAME]    grade students' submissions, each in a sandbox
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = main.add_subparsers(dest="command", required=True, metavar="command")

    release = commands.add_parser("release", help="rebuild the notebooks from their sources")
    release.add_argument("names", nargs="*", help="assignments, e.g. 00_welcome (default: all)")
    release.add_argument("--check", action="store_true",
                         help="change nothing; exit 1 if a committed notebook is stale")

    commands.add_parser("doctor", help="check this installation")

    check = commands.add_parser(
        "check", help="run a notebook and score its tests as the grader would",
        description="Run your notebook top to bottom in a fresh kernel and print the score of "
                    "each graded cell, by nbgrader's rule (a test cell scores its points when it "
                    "runs without an error). Only the notebook's own tests run: hidden tests "
                    "check the same exercises when you submit.")
    check.add_argument("notebook", type=Path, help="e.g. notebooks/00_welcome/00_welcome.ipynb")
    check.add_argument("--cell-timeout", type=float, default=900.0, metavar="SECONDS",
                       help="per-cell limit (default: 900, as the grader)")

    bench = commands.add_parser(
        "bench", aliases=["benchmark"], help="run and measure the solution notebooks",
        description="Run every solution notebook (or those named) in a fresh kernel, one at a "
                    "time, and time the from-scratch conv2d and attention against torch's; "
                    "print a markdown table of times, peak memory and learning figures, and "
                    "write it as JSON. Budgets: CONTRIBUTING.md.")
    bench.add_argument("names", nargs="*", help="assignments, e.g. 00_welcome (default: all)")
    bench.add_argument("--device", choices=["cpu", "cuda"],
                       help="where the notebooks run (default: cuda if there is one, else cpu)")
    bench.add_argument("--check", action="store_true",
                       help="exit 1 if a budget or learning threshold is missed (a notebook "
                            "that fails always does)")
    bench.add_argument("--json", type=Path, metavar="PATH", dest="json_path",
                       help="where the JSON goes (default: build/bench-DEVICE.json)")
    bench.add_argument("--skip-micro", action="store_true",
                       help="skip the conv2d and attention micro-benchmarks")
    bench.add_argument("--no-calibration", action="store_true",
                       help="do not time the calibration workload (CPU budgets then judge "
                            "plain seconds, which depend on the machine and the day)")

    grade = commands.add_parser(
        "grade", help="grade submissions in sandboxes (see docs/instructors.md)",
        description="Autograde every submission, each in its own sandbox, re-check every test "
                    "outside the student's kernel, and record the scores in nbgrader's "
                    "gradebook. See docs/instructors.md.")
    grade.add_argument("submissions", type=Path,
                       help="nbgrader's submitted/<student>/<assignment>/ folder, or a flat "
                            "folder of <student>.ipynb files")
    grade.add_argument("-a", "--assignment", action="append", dest="assignments",
                       metavar="NAME", help="the assignment, e.g. 00_welcome (repeatable; "
                                            "default: every assignment found)")
    grade.add_argument("-j", "--jobs", type=int,
                       help="submissions graded at once (default: one per CPU core, as memory "
                            "allows)")
    grade.add_argument("--course", type=Path,
                       help="the course folder (default: the repository you are in)")
    grade.add_argument("--output", type=Path, help="where the CSV and the report go "
                                                   "(default: COURSE/grades)")
    grade.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                       help="per-cell limit (default: Execute.timeout of nbgrader_config.py)")
    grade.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="per-submission limit for the notebook's run, and again for the "
                            "re-check (default: 3600)")
    grade.add_argument("--memory", type=float, default=6.0, metavar="GB",
                       help="memory per submission (default: 6)")
    grade.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                       help="cpu: hide the GPUs, for scores that match a CPU-only machine; "
                            "cuda: grade on a GPU (with --scheduler: on the workers that "
                            "declare a GPU resource)")
    grade.add_argument("--scheduler", metavar="ADDRESS",
                       help="grade on a Dask cluster: the scheduler's address "
                            "(tcp://HOST:8786), or auto for a local cluster of --jobs workers "
                            "(needs the cluster extra; see docs/instructors.md)")
    grade.add_argument("--unsafe", action="store_true",
                       help="grade without a sandbox when none is available (NOT recommended)")
    grade.add_argument("--no-feedback", action="store_true", help="write no feedback HTML")
    grade.add_argument("--no-preflight", action="store_true",
                       help="do not grade the instructor's solution first")
    grade.add_argument("--no-progress", action="store_true", help="no progress bar")
    grade.add_argument("--resume", action="store_true",
                       help="grade only what the last run's report does not hold yet (a "
                            "submission changed since is graded again)")
    grade.add_argument("--grading-timeout", type=float, metavar="SECONDS",
                       help="per-submission limit for everything the grader does, from "
                            "outside (default: twice --timeout plus 10 minutes)")
    grade.add_argument("--timestamp-tolerance", type=float, default=600.0, metavar="SECONDS",
                       help="flag a student's timestamp.txt that disagrees with the time the "
                            "submission was received by more than this (default: 600)")
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "doctor":
        from course_utils.tools import doctor

        return doctor.main()
    if args.command == "check":
        from course_utils.tools import selfcheck

        return selfcheck.main(args.notebook, args.cell_timeout)
    if args.command == "grade":
        from course_utils.tools.grading import batch

        return batch.main(batch.Options(
            submissions=args.submissions, assignments=args.assignments, jobs=args.jobs,
            course=args.course, output=args.output, cell_timeout=args.cell_timeout,
            timeout=args.timeout, memory_gb=args.memory, device=args.device,
            unsafe=args.unsafe, feedback=not args.no_feedback,
            preflight=not args.no_preflight, progress=not args.no_progress,
            resume=args.resume, grading_timeout=args.grading_timeout,
            timestamp_tolerance=args.timestamp_tolerance, scheduler=args.scheduler))

    from course_utils.tools import paths, release

    root = paths.repository_root()
    if args.command == "release":
        if args.check:
            problems = release.stale(root, args.names or None)
            for problem in problems:
                print(problem)
            if problems:
                print("run `python -m course_utils release` and commit the result")
            return 1 if problems else 0
        changed = release.release(root, args.names or None)
        print(f"{len(changed)} notebook(s) changed" if changed else "all notebooks up to date")
        return 0
    if args.command in ("bench", "benchmark"):
        from course_utils.tools.bench import command

        return command.main(command.Options(
            root=root, names=args.names or None, device=args.device, check=args.check,
            json_path=args.json_path, micro=not args.skip_micro,
            calibrate=not args.no_calibration))
    raise AssertionError(args.command)
