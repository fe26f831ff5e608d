"""The machine a run measured, and a run as markdown (for people and the README)."""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any

import torch

from course_utils.metrics import format_metric
from course_utils.tools.bench.budgets import BUDGETS, REFERENCE, speed, thresholds
from course_utils.tools.bench.results import Report


def machine(device: str) -> dict[str, Any]:
    """What the numbers depend on: the device, the GPU's name (cuda), the CPUs this process
    may use and their model, torch's threads, the versions, the date (UTC)."""
    return {
        "device": device,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "cpus": usable_cpus(),
        "cpu_model": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name, as the operating system gives it ("" if unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown(report: Report, problems: list[str]) -> str:
    """The report as markdown: a header naming the machine, a table of the notebooks (time,
    peak memory, budgets), one of their learning figures (thresholds), one of the
    micro-benchmarks, then ``problems`` (or that there are none)."""
    parts = [header(report), notebook_table(report), figure_table(report)]
    if report.micro:
        parts.append(micro_table(report))
    if problems:
        parts.append("**Problems:**\n\n" + "\n".join(f"- {p}" for p in problems))
    else:
        parts.append("**No problems:** everything ran, within the course's budgets "
                     "and thresholds.")
    return "\n\n".join(part for part in parts if part) + "\n"


def header(report: Report) -> str:
    """A heading naming the device (and GPU), then a line naming the rest of the machine."""
    m = report.machine
    device = f"{m['device']} ({m['gpu']})" if m.get("gpu") else m["device"]
    lines = [
        f"## Course benchmark: {device}",
        "",
        f"{m['cpus']} CPU cores ({m['cpu_model'] or 'unknown model'}), {m['torch_threads']} "
        f"torch threads · torch {m['torch']} · Python {m['python']} · {m['platform']} · "
        f"{m['date']}",
    ]
    if m["device"] == "cpu" and m["cpus"] != 2:
        lines.append(f"\nThe CPU budgets are for 2 cores; this run had {m['cpus']}.")
    calibration = report.calibration
    if calibration is not None:
        factor = speed(calibration)
        relative = (f"{factor:.2f}× slower than" if factor > 1.05 else
                    f"{1 / factor:.2f}× faster than" if factor < 1 / 1.05 else "as fast as")
        lines += ["", f"Calibration: {calibration.seconds:.2f} s for {calibration.steps} "
                      f"training steps (median of {len(calibration.repeats)}, spread "
                      f"{100 * calibration.spread:.0f} %): this machine ran {relative} the "
                      f"reference machine ({REFERENCE.calibration_s:.2f} s, "
                      f"{REFERENCE.date}). "
                      + ("Times are judged in calibration units (seconds ÷ calibration)."
                         if report.device == "cpu" else "")]
        lines += [f"\n**Warning:** {w}; these times are not numbers." for w in
                  calibration.warnings()]
    return "\n".join(lines)


def notebook_table(report: Report) -> str:
    """| notebook | time | [units | budget in units |] budget | peak memory | [GPU memory |]
    device |, and the total. Units: seconds ÷ this run's calibration; their budget is the
    seconds budget ÷ the reference machine's calibration."""
    budgets = BUDGETS.get(report.device)
    gpu = report.device == "cuda"
    cal = report.calibration.seconds if report.calibration and not gpu else None
    units = ["units", "budget (units)"] if cal else []
    rows = [["notebook", "time", *units, "budget (reference s)" if cal else "budget",
             "peak memory", *(["GPU memory"] if gpu else []), "device"]]

    def calibrated(value: float | None, budget: float | None) -> list[str]:
        if not cal:
            return []
        return ["?" if value is None else f"{value / cal:.1f}",
                "" if budget is None else f"≤ {REFERENCE.units(budget):.1f}"]

    for run in report.notebooks:
        time = seconds(run.seconds) + (" (failed)" if run.error else "")
        budget = budgets.for_notebook(run.name) if budgets else None
        rows.append([run.name, time, *calibrated(run.seconds, budget), at_most(budget, " s"),
                     mib(run.peak_mib), *([mib(run.gpu_peak_mib)] if gpu else []),
                     run.device or "?"])
    course = budgets.course_s if budgets else None
    total = calibrated(report.total_seconds, course)
    rows.append(["**total**", f"**{seconds(report.total_seconds)}**",
                 *[f"**{c}**" if i == 0 else c for i, c in enumerate(total)],
                 at_most(course, " s"), "", *([""] if gpu else []), ""])
    return table(rows, "lr" + "r" * len(units) + "rr" + ("r" if gpu else "") + "l")


def figure_table(report: Report) -> str:
    """| notebook | learning figure | value | threshold |, every figure in the order reported."""
    rows = [["notebook", "learning figure", "value", "threshold"]]
    for run in report.notebooks:
        minimums = thresholds(run.name)
        for metric in run.metrics:
            least = minimums.get(metric.name)
            shown = ("reported" if least == 0 else
                     "" if least is None else f"≥ {format_metric(least, metric.unit)}")
            rows.append([run.name, metric.name, format_metric(metric.value, metric.unit), shown])
    return table(rows, "llrl") if len(rows) > 1 else "No learning figures were reported."


def micro_table(report: Report) -> str:
    """| micro-benchmark | inputs | from scratch | torch | ratio | budget |, medians."""
    budgets = BUDGETS.get(report.device)
    rows = [["micro-benchmark", "inputs", "from scratch", "torch", "ratio", "budget"]]
    for micro in report.micro:
        budget = budgets.slower_than_torch.get(micro.key) if budgets else None
        if micro.error:
            rows.append([micro.name, "", "failed", "", "", at_most(budget, "×")])
            continue
        rows.append([micro.name, micro.shape, f"{micro.ours_ms:.3g} ms",
                     f"{micro.torch_ms:.3g} ms", f"{micro.ratio:.2f}×", at_most(budget, "×")])
    return table(rows, "llrrrr")


def table(rows: list[list[str]], align: str) -> str:
    """A markdown table: the first row is the header; ``align`` has "l" or "r" per column."""
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [rows[0], rule, *rows[1:]]
    return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |"
                     for line in lines)


def seconds(value: float | None) -> str:
    """"12.3 s" ("?" when unknown)."""
    return "?" if value is None else f"{value:.1f} s"


def mib(value: float | None) -> str:
    """"818 MiB" ("?" when unknown)."""
    return "?" if value is None else f"{value:.0f} MiB"


def at_most(budget: float | None, unit: str) -> str:
    """"≤ 60 s" for a budget of 60 and unit " s" ("" when there is no budget)."""
    return "" if budget is None else f"≤ {budget:g}{unit}"
