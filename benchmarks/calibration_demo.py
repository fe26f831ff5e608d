"""Do calibrated budgets give the same verdict on a fast and a slow host, and still catch a
slower course? A demonstration, with a stand-in notebook (issue "calibrated budgets").

The stand-in is a notebook that trains the calibration's own workload ``REPEATS_OF_WORK``
times (so that its time is a known number of calibration units on any machine); it gets a
budget 1.25× its reference time. The script runs ``bench --check`` on it twice, through the
real command (a fresh kernel, the calibration before and after):

- the stand-in as it is: must pass;
- the stand-in made 1.5× slower (1.5× the work): must fail.

Run it as it is, then under an artificial slowdown, and compare the verdicts:

    python benchmarks/calibration_demo.py
    taskset -c 0 python benchmarks/calibration_demo.py                 # one core of two
    (python -c "while True: pass" &) ; python benchmarks/calibration_demo.py   # a busy host
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import nbformat

from course_utils.tools.bench import budgets, command

#: Training steps of the stand-in: this many calibration repeats' worth.
REPEATS_OF_WORK = 30
NAME = "99_standin"


def stand_in(root: Path, work: float) -> None:
    folder = root / "solutions" / NAME
    folder.mkdir(parents=True, exist_ok=True)
    steps = round(work * REPEATS_OF_WORK * 25)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from course_utils.speed import workload\n"
        f"workload({steps})  # {work}× the stand-in's work")])
    nbformat.write(notebook, folder / f"{NAME}.ipynb")


def run(work: float) -> tuple[int, dict]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        stand_in(root, work)
        options = command.Options(root=root, names=[NAME], device="cpu", check=True,
                                  json_path=root / "bench.json", micro=False)
        code = command.main(options)
        return code, json.loads((root / "bench.json").read_text())


def main() -> int:
    # the stand-in's budget: 1.25× its time on the reference machine (its work in calibration
    # units, plus about 2 s there to start a kernel and import torch)
    reference_s = budgets.REFERENCE.calibration_s * REPEATS_OF_WORK + 2.0
    cpu = budgets.BUDGETS["cpu"]
    budgets.BUDGETS["cpu"] = replace(cpu, notebook_s_for={**cpu.notebook_s_for,
                                                          NAME: 1.25 * reference_s})
    verdicts = {}
    for label, work in (("as it is", 1.0), ("made 1.5× slower", 1.5)):
        code, data = run(work)
        calibration = data["calibration"]["seconds"]
        seconds = data["notebooks"][0]["seconds"]
        verdicts[label] = code
        factor = calibration / budgets.REFERENCE.calibration_s
        print(f"stand-in {label}: {seconds:.1f} s, {seconds / calibration:.1f} units "
              f"(calibration {calibration:.2f} s, {factor:.2f}× the reference; budget "
              f"{budgets.REFERENCE.units(1.25 * reference_s):.1f} units): bench --check "
              f"{'passed' if code == 0 else 'FAILED'}", file=sys.stderr)
    ok = verdicts == {"as it is": 0, "made 1.5× slower": 1}
    print("as expected" if ok else "NOT as expected", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
