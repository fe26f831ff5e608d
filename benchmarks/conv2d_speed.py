"""How much slower are the solutions' conv2d and attention than torch's? Notebook 01 cites this.

The measurement itself is part of ``python -m course_utils bench`` (its micro-benchmarks,
``course_utils/tools/bench/micro.py``); this prints them alone, on an otherwise idle machine:

    python benchmarks/conv2d_speed.py [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from course_utils.tools.bench import micro, report
from course_utils.tools.bench.results import Report

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    device = parser.parse_args().device
    run = Report(machine=report.machine(device), micro=micro.run_micro(ROOT, device))
    print(report.header(run), report.micro_table(run), sep="\n\n")


if __name__ == "__main__":
    main()
