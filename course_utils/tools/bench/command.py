"""``python -m course_utils bench [NAME ...] [--device cpu|cuda] [--check] [--json PATH]
[--skip-micro]``: see the package's docstring."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from course_utils.tools.bench import budgets, calibrate, micro, notebooks, report
from course_utils.tools.bench.results import Report
from course_utils.tools.release import assignments


@dataclass
class Options:
    """The command's arguments.

    Attributes:
        root: the course folder (with solutions/).
        names: the assignments to run, in order (None: all of them).
        device: "cpu" or "cuda" (None: cuda if there is one, else cpu).
        check: exit 1 when a budget or threshold is missed, not only when a notebook fails.
        json_path: where the JSON goes (None: build/bench-DEVICE.json in the course folder).
        micro: also run the micro-benchmarks.
        calibrate: also time the calibration workload, before the notebooks and after them
            (``calibrate.py``); the CPU budgets are then judged in its units.
    """

    root: Path
    names: list[str] | None = None
    device: str | None = None
    check: bool = False
    json_path: Path | None = None
    micro: bool = True
    calibrate: bool = True


def main(options: Options) -> int:
    """Run, print the markdown on stdout (progress on stderr), write the JSON. Exit status:
    2 for a bad argument; 1 if a notebook or micro-benchmark failed, or (``check``) anything
    missed a budget or threshold; else 0."""
    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print(f"--device cuda: torch {torch.__version__} sees no CUDA GPU here", file=sys.stderr)
        return 2
    try:
        paths = [notebooks.assignment_notebook(options.root, name)
                 for name in options.names or assignments(options.root)]
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 2

    run = Report(machine=report.machine(device))
    repeats: list[float] = []
    load = calibrate.load_per_core()
    if options.calibrate:
        progress("calibration ...")
        repeats += calibrate.time_repeats(device=device)
    if options.micro:
        progress("micro-benchmarks ...")
        run.micro = micro.run_micro(options.root, device)
    for index, path in enumerate(paths, 1):
        progress(f"[{index}/{len(paths)}] {path.stem} ...")
        run.notebooks.append(notebooks.run_notebook(path, device))
        progress(f"    {report.seconds(run.notebooks[-1].seconds)}"
                 + (" FAILED" if run.notebooks[-1].error else ""))

    if options.calibrate:
        progress("calibration again ...")
        repeats += calibrate.time_repeats(device=device)
        run.calibration = calibrate.summarise(repeats, load)
        for warning in run.calibration.warnings():
            progress(f"WARNING: {warning}; its times are not numbers: measure again on an "
                     "idle machine")
    problems = budgets.check(run)
    print(report.markdown(run, problems), end="")
    json_path = options.json_path or options.root / "build" / f"bench-{device}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(run.to_json(problems), indent=2, ensure_ascii=False) + "\n",
                         encoding="utf-8")
    progress(f"results written to {json_path}")
    failed = any(r.error for r in run.notebooks) or any(m.error for m in run.micro)
    return 1 if failed or (options.check and problems) else 0


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
