"""What a benchmark run produced: plain data, written to JSON as it is."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from course_utils.tools.bench.calibrate import Calibration


@dataclass
class Metric:
    """A learning figure a notebook reported with ``report_metric`` (fractions for "%")."""

    name: str
    value: float
    unit: str = ""


@dataclass
class NotebookRun:
    """One solution notebook, run top to bottom in a fresh kernel.

    Attributes:
        name: the assignment, e.g. "00_welcome".
        seconds: wall time from starting the kernel to the end of the last cell (or of the
            cell that failed); None if the kernel never started.
        peak_mib: the kernel process's peak resident memory, MiB (None: not measurable).
        gpu_peak_mib: ``torch.cuda.max_memory_allocated()`` in the kernel, MiB (None: the
            notebook never used CUDA).
        device: what ``course_utils.get_device()`` returned in the kernel (None: the notebook
            never called it).
        metrics: the figures the notebook reported, in order (a figure reported twice, e.g. by
            a visible and a hidden test, appears twice).
        error: why the notebook failed (None: every cell ran).
    """

    name: str
    seconds: float | None = None
    peak_mib: float | None = None
    gpu_peak_mib: float | None = None
    device: str | None = None
    metrics: list[Metric] = field(default_factory=list)
    error: str | None = None


@dataclass
class MicroResult:
    """A from-scratch function timed against torch's on the same inputs.

    Attributes:
        key: which budget applies (``budgets.Budgets.slower_than_torch``), e.g. "conv2d".
        name: what was timed, e.g. "conv2d vs F.conv2d, forward".
        shape: the inputs, e.g. "x (64, 3, 32, 32), weight (16, 3, 3, 3), padding 1".
        ours_ms, torch_ms: median milliseconds per call.
        ratio: ours_ms / torch_ms (how many times slower the from-scratch version is).
        error: why it could not be timed (None: it was).
    """

    key: str
    name: str
    shape: str = ""
    ours_ms: float | None = None
    torch_ms: float | None = None
    ratio: float | None = None
    error: str | None = None


@dataclass
class Report:
    """A whole run: the machine (``report.machine``), the notebooks, the micro-benchmarks,
    and the machine's speed during the run (``calibrate.py``)."""

    machine: dict[str, Any]
    notebooks: list[NotebookRun] = field(default_factory=list)
    micro: list[MicroResult] = field(default_factory=list)
    calibration: Calibration | None = None  # the machine's speed during the run

    @property
    def device(self) -> str:
        """"cpu" or "cuda": the device the notebooks were asked to run on."""
        return self.machine["device"]

    @property
    def total_seconds(self) -> float:
        """The notebooks' wall times added up (those that never started count 0)."""
        return sum(run.seconds or 0.0 for run in self.notebooks)

    def to_json(self, problems: list[str]) -> dict[str, Any]:
        """The report as JSON-ready data (NaN becomes null), with ``problems`` beside it."""
        data = dataclasses.asdict(self)
        data["total_seconds"] = self.total_seconds
        data["problems"] = problems
        return _without_nan(data)


def _without_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return value
