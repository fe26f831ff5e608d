"""How fast this machine is today: a fixed piece of training, timed in the same run.

A notebook's seconds measure the machine and the day as much as the course: the same bench
took 2.4× longer on a slower host of the same kind, while every ratio and every learning
figure held. So ``bench`` also times a fixed workload made of the layers the notebooks train
(convolutions, pooling, linear layers, AdamW steps on 32×32 images, as 01's SmallCNN), at the
thread count the notebooks use, several times before the notebooks and again after them. Its
median is the machine's unit of time: a notebook's time divided by it hardly changes from a
fast host to a slow one, and grows only when the course itself gets slower.

The budgets (``budgets.CALIBRATED``) are the budgets' seconds divided by the calibration
of the reference machine (``budgets.REFERENCE``), measured idle on the machine the README's
table names. The workload itself is ``course_utils.speed.workload``: training cells time it too,
to say how long a student's model should take on their machine.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

import torch

from course_utils.speed import STEPS, time_workload

#: Repeats before the notebooks and again after them.
REPEATS = 3
#: A spread (max − min) / median across the repeats above this says "the machine was busy".
NOISY_SPREAD = 0.3
#: A load average per usable core above this, before the run, says the same.
BUSY_LOAD = 0.5


@dataclass
class Calibration:
    """The machine's speed, measured.

    Attributes:
        seconds: the median of ``repeats`` (seconds for STEPS training steps).
        repeats: every repeat's seconds, in the order measured.
        steps: the training steps of one repeat.
        threads: torch's threads while it ran (the notebooks' count).
        load: the 1-minute load average per usable core just before the run (None: unknown).
    """

    seconds: float
    repeats: list[float] = field(default_factory=list)
    steps: int = STEPS
    threads: int = 1
    load: float | None = None

    @property
    def spread(self) -> float:
        """(slowest − fastest) / median of the repeats: 0 on a quiet machine."""
        if len(self.repeats) < 2 or not self.seconds:
            return 0.0
        return (max(self.repeats) - min(self.repeats)) / self.seconds

    def warnings(self) -> list[str]:
        """Why the timings of this run may not be numbers (empty when the machine was quiet)."""
        found = []
        if self.spread > NOISY_SPREAD:
            found.append(f"the calibration's repeats differ by {100 * self.spread:.0f} % "
                         f"({', '.join(f'{s:.2f}' for s in self.repeats)} s): something else "
                         "was using the CPU during the run")
        if self.load is not None and self.load > BUSY_LOAD:
            found.append(f"the load average was {self.load:.2f} per core before the run: the "
                         "machine was busy")
        return found


def load_per_core() -> float | None:
    """The 1-minute load average divided by the cores this process may use."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    return load / cores


def time_repeats(repeats: int = REPEATS, steps: int = STEPS, device: str = "cpu") -> list[float]:
    """Seconds of ``repeats`` runs of the workload, after one untimed warm-up."""
    return time_workload(repeats, steps, device)


def summarise(repeats: list[float], load: float | None, steps: int = STEPS) -> Calibration:
    return Calibration(statistics.median(repeats), list(repeats), steps,
                       torch.get_num_threads(), load)


def calibrate(repeats: int = REPEATS, steps: int = STEPS, device: str = "cpu") -> Calibration:
    """A calibration on its own (``doctor``; ``bench`` calls :func:`time_repeats` before and
    after the notebooks and summarises both)."""
    load = load_per_core()
    return summarise(time_repeats(repeats, steps, device), load, steps)
