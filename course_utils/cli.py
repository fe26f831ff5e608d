"""The command line: ``python -m course_utils <command>``.

    release [NAME ...] [--check]   rebuild solutions/*.ipynb and notebooks/ from the sources
    doctor                         is this installation ready for the course?
    benchmark [NAME ...]           time, memory and quality of every solution notebook
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

    benchmark = commands.add_parser("benchmark", help="run and measure the solution notebooks")
    benchmark.add_argument("names", nargs="*", help="assignments (default: all)")
    benchmark.add_argument("--output", type=Path, help="also write the results as JSON")
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "doctor":
        from course_utils import doctor

        return doctor.main()

    from course_utils import release

    root = release.repository_root()
    if args.command == "release":
        if args.check:
            problems = release.stale(root)
            for problem in problems:
                print(problem)
            if problems:
                print("run `python -m course_utils release` and commit the result")
            return 1 if problems else 0
        changed = release.release(root, args.names or None)
        print(f"{len(changed)} notebook(s) changed" if changed else "all notebooks up to date")
        return 0
    if args.command == "benchmark":
        from course_utils import benchmark

        return benchmark.main(root, args.names or None, args.output)
    raise AssertionError(args.command)
