"""What the course promises (``BUDGETS``; CONTRIBUTING.md, "Budgets"), and the check of a run
against it.

``check(report)`` is a pure function of a ``Report``: the command's ``--check`` exits 1 when
it returns anything. On the CPU, times are judged in calibration units (``calibrate.py``): a
notebook's seconds divided by the machine's calibration, against the budget's seconds divided by the
calibration of the reference machine (``REFERENCE``), so that a slow or busy host does not
fail the course and a fast one does not hide a slower course. Memory, ratios and learning
figures do not depend on the machine's speed and are judged as they are.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from course_utils.checks.core import QualityCheck
from course_utils.data import QUESTION_TYPES
from course_utils.metrics import format_metric
from course_utils.speed import REFERENCE_SECONDS
from course_utils.tools.bench.results import Metric, Report


@dataclass(frozen=True)
class Budgets:
    """What "fast" means on one kind of device.

    Attributes:
        notebook_s: seconds for each notebook, top to bottom in a fresh kernel (None: none).
        notebook_s_for: exceptions to ``notebook_s``, by assignment.
        course_s: seconds for every notebook, one after the other.
        peak_mib: the peak resident memory of any notebook's kernel, MiB.
        slower_than_torch: at most this many times torch's time, by micro-benchmark key.
    """

    notebook_s: float | None
    course_s: float
    peak_mib: float
    notebook_s_for: dict[str, float] = field(default_factory=dict)
    slower_than_torch: dict[str, float] = field(default_factory=dict)

    def for_notebook(self, name: str) -> float | None:
        """The seconds notebook ``name`` may take (None: no per-notebook budget)."""
        return self.notebook_s_for.get(name, self.notebook_s)


#: The promises, by the device the notebooks run on: "cpu" is 2 CPU cores, "cuda" one
#: datacentre GPU. A notebook takes at most 3 minutes on the CPU, except the short 00 and 03
#: (1 minute) and the four that train the most (04, 05 and 07: 4 minutes, 06: 5 minutes); the
#: whole course 15 minutes on the CPU and 2 on a GPU; no kernel above 4 GiB; the from-scratch
#: im2col convolution at most 5× and attention at most 3× torch's own kernels.
BUDGETS: dict[str, Budgets] = {
    "cpu": Budgets(notebook_s=3 * 60, course_s=15 * 60, peak_mib=4 * 1024,
                   notebook_s_for={"00_welcome": 60, "03_similarity_contrastive": 60,
                                   "04_mini_clip": 4 * 60, "05_vilt_vqa": 4 * 60,
                                   "06_diffusion": 5 * 60, "07_captioning": 4 * 60},
                   slower_than_torch={"conv2d": 5.0, "attention": 3.0}),
    "cuda": Budgets(notebook_s=None, course_s=2 * 60, peak_mib=4 * 1024),
}

#: The check package each notebook grades its trained models with (its set-up cell's
#: ``from course_utils.checks import ... as checks``).
CHECKS: dict[str, str] = {
    "01_convolution_pooling": "convolution",
    "02_vision_transformer": "vit",
    "04_mini_clip": "clip",
    "05_vilt_vqa": "vilt",
    "06_diffusion": "diffusion",
    "07_captioning": "captioning",
}

#: Figures a notebook must report although nothing grades them (shown as "reported").
REPORTED: dict[str, tuple[str, ...]] = {
    "05_vilt_vqa": tuple(f"VQA accuracy: {question_type}" for question_type in QUESTION_TYPES),
}


def thresholds(notebook: str) -> dict[str, float]:
    """The learning figures ``notebook`` must report, by the names its graded cells give them,
    and their minimum (fractions; 0: only reported).

    The minimums are the notebook's ``QualityCheck``s' own (``QualityCheck.thresholds``): a
    threshold is written once, where it is graded, and read here.
    """
    if notebook not in CHECKS:
        return {}
    module = importlib.import_module(f"course_utils.checks.{CHECKS[notebook]}")
    graded: dict[str, float] = {}
    for value in vars(module).values():
        if isinstance(value, QualityCheck):
            graded.update(value.thresholds)
    return {**dict.fromkeys(REPORTED.get(notebook, ()), 0.0), **graded}


@dataclass(frozen=True)
class Reference:
    """The idle run that turns the budgets' seconds into calibrated budgets.

    Attributes:
        calibration_s: the calibration's median there (``calibrate.Calibration.seconds``).
        machine: the machine, in words (the one the README's table names).
        date: when it was measured.
        notebook_s: each notebook's seconds there (for "about N minutes on your machine":
            ``doctor`` scales them by the ratio of the calibrations).
    """

    calibration_s: float
    machine: str
    date: str
    notebook_s: dict[str, float] = field(default_factory=dict)

    def units(self, seconds: float) -> float:
        """Seconds on the reference machine as calibration units."""
        return seconds / self.calibration_s


#: The README's reference run: 2 CPU cores, measured idle on 2026-11-28 (every notebook, with
#: ``bench --check``). Its calibration is derived: the workload did not exist then, so it was
#: timed on 2026-12-07 on the same kind of machine (0.714 s, median of 6, idle) and divided by
#: how much slower torch's own kernels ran that day than in the README's micro-benchmark table
#: (F.conv2d 2.63×, SDPA forward 2.16×, forward + backward 1.91×: median 2.16×).
REFERENCE = Reference(
    calibration_s=REFERENCE_SECONDS,
    machine="2 CPU cores (AMD EPYC), 2 torch threads, torch 2.14.1, Python 3.11.7 (README)",
    date="2026-11-28",
    # The notebooks with their experiments (predict → run → explain), 2026-12-07: that run's
    # calibration units (README, "On 2 CPU cores") times the reference calibration.
    notebook_s={"00_welcome": 3.6, "01_convolution_pooling": 27.8,
                "02_vision_transformer": 106.4, "03_similarity_contrastive": 24.6,
                "04_mini_clip": 96.3, "05_vilt_vqa": 177.8, "06_diffusion": 286.0,
                # 07 measured alone, 2026-12-07 (160.1 s, 360.9 units, calibration 0.44 s)
                "07_captioning": 119.5},
)


def speed(calibration) -> float:
    """How many times longer this machine took than the reference (2.0: twice as slow)."""
    return calibration.seconds / REFERENCE.calibration_s


def check(report: Report) -> list[str]:
    """Everything in ``report`` that misses the budgets, one readable line each, naming
    the notebook (or micro-benchmark) and the figure: notebooks that failed, time and memory
    over budget, learning figures below their threshold or never reported, from-scratch
    functions too slow. Empty when all is well. Budgets of a device not in BUDGETS are not
    checked (failures and thresholds still are)."""
    budgets = BUDGETS.get(report.device)
    calibrated = report.calibration is not None and report.device == "cpu"
    problems = []
    for run in report.notebooks:
        if run.error:
            problems.append(f"{run.name}: failed: {run.error}")
            continue
        if budgets is not None and calibrated:
            problems += over_calibrated(run.name, run.seconds, report.calibration.seconds,
                                        budgets.for_notebook(run.name))
        elif budgets is not None:
            problems += over_budget(run.name, "time", run.seconds,
                                    budgets.for_notebook(run.name), " s")
            problems += over_budget(run.name, "peak memory", run.peak_mib, budgets.peak_mib,
                                    " MiB")
        problems += below_threshold(run.name, run.metrics, thresholds(run.name))
    if budgets is not None and report.notebooks:
        together = f"the {len(report.notebooks)} notebook(s) together"
        if calibrated:
            problems += over_calibrated(together, report.total_seconds,
                                        report.calibration.seconds, budgets.course_s)
        else:
            problems += over_budget(together, "time", report.total_seconds, budgets.course_s,
                                    " s")
    for micro in report.micro:
        if micro.error:
            problems.append(f"{micro.name}: failed: {micro.error}")
        elif budgets is not None:
            problems += over_budget(micro.name, "ratio", micro.ratio,
                                    budgets.slower_than_torch.get(micro.key), "×")
    return problems


def over_calibrated(subject: str, seconds: float | None, calibration_s: float,
                    budget_s: float | None) -> list[str]:
    """``over_budget`` in calibration units: ``seconds / calibration_s`` against the budget's
    seconds on the reference machine, ``budget_s / REFERENCE.calibration_s``."""
    if seconds is None or budget_s is None:
        return []
    value, budget = seconds / calibration_s, REFERENCE.units(budget_s)
    if value <= budget:
        return []
    return [f"{subject}: time {value:.1f} units ({seconds:.1f} s on this machine) is over its "
            f"budget of {budget:.1f} units ({budget_s:g} s on the reference machine)"]


def over_budget(subject: str, figure: str, value: float | None, budget: float | None,
                unit: str) -> list[str]:
    """``["subject: figure V<unit> is over its budget of B<unit>"]`` when value > budget, else
    ``[]`` (also when either is unknown); ``unit`` is written as given, e.g. " s" or "×"."""
    if value is None or budget is None or value <= budget:
        return []
    return [f"{subject}: {figure} {value:.4g}{unit} is over its budget of {budget:g}{unit}"]


def below_threshold(notebook: str, metrics: list[Metric],
                    thresholds: dict[str, float]) -> list[str]:
    """A line for each figure of ``thresholds`` that ``metrics`` never reports or reports
    below its minimum (every report of a figure counts: visible and hidden tests alike)."""
    problems = []
    for name, minimum in thresholds.items():
        values = [m for m in metrics if m.name == name]
        if not values:
            problems.append(f"{notebook}: the figure '{name}' was not reported")
        for metric in values:
            if not metric.value >= minimum:  # NaN fails too
                value, least = (format_metric(v, metric.unit) for v in (metric.value, minimum))
                problems.append(f"{notebook}: '{name}' is {value}, below its threshold of {least}")
    return problems
