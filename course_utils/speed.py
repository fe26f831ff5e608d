"""How fast this machine is, in the course's unit of time, and where a slow model spends it.

One fixed piece of training (``workload``: a small CNN's AdamW steps on 32×32 images, the
layers the notebooks train) is the unit. ``bench`` times it around the notebooks to turn its
seconds into machine-independent figures; a training cell times a few steps of it to say how
long *your* model should take here (``course_utils.training.StepTimer``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

#: Training steps of one calibration repeat (about a second on the reference machine).
STEPS = 25
#: Seconds of one repeat (STEPS steps) on the reference machine of the README's table (how it
#: was measured: ``course_utils.tools.bench.budgets.REFERENCE``).
REFERENCE_SECONDS = 0.714 / 2.16


def workload(steps: int = STEPS, device: str = "cpu") -> None:
    """``steps`` AdamW steps of a small CNN on a fixed batch of 64 images 32×32 (seeded)."""
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 15),
    ).to(device)
    images = torch.rand(64, 3, 32, 32, generator=generator).to(device)  # (B, C, H, W)
    labels = torch.randint(0, 15, (64,), generator=generator).to(device)  # (B,)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(steps):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()


def time_workload(repeats: int, steps: int = STEPS, device: str = "cpu",
                  warmup: int = 2) -> list[float]:
    """Seconds of ``repeats`` runs of ``steps`` steps of the workload, after ``warmup``
    untimed steps."""
    workload(warmup, device)
    found = []
    for _ in range(repeats):
        begin = time.perf_counter()
        workload(steps, device)
        found.append(time.perf_counter() - begin)
    return found


@lru_cache(maxsize=1)
def machine_factor(steps: int = 5, repeats: int = 3) -> float:
    """How many times longer this machine's CPU takes than the reference machine (2.0: twice
    as slow): the fastest of ``repeats`` runs of ``steps`` steps of the workload, after one
    warm-up step, so that a busy moment does not count. Measured once per process (about a
    third of a second); the global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        found = time_workload(repeats, steps, warmup=1)
    return min(found) * STEPS / steps / REFERENCE_SECONDS


def time_by_submodule(model: nn.Module, run: Callable[[], object],
                      depth: int = 2) -> dict[str, float]:
    """Seconds ``run()`` spends inside each submodule of ``model`` named down to ``depth``
    levels (``"blocks"``, ``"blocks.0"``), counting only the outermost call of each name, so
    a container's time includes its children's. Names whose modules ``run`` never calls are
    left out (a ``ModuleList`` is never called itself: its elements are)."""
    spent: dict[str, float] = defaultdict(float)
    active: dict[str, int] = defaultdict(int)
    started: dict[str, float] = {}
    handles = []

    def prefixes(name: str) -> list[str]:
        parts = name.split(".")
        return [".".join(parts[:k]) for k in range(1, min(depth, len(parts)) + 1)]

    def enter(names):
        def hook(module, args):
            for name in names:
                if active[name] == 0:
                    started[name] = time.perf_counter()
                active[name] += 1
        return hook

    def leave(names):
        def hook(module, args, output):
            for name in names:
                active[name] -= 1
                if active[name] == 0:
                    spent[name] += time.perf_counter() - started.pop(name)
        return hook

    for name, module in model.named_modules():
        if name:
            names = prefixes(name)
            handles.append(module.register_forward_pre_hook(enter(names)))
            handles.append(module.register_forward_hook(leave(names)))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return dict(spent)


def slowest_part(times: dict[str, float]) -> tuple[str, float] | None:
    """The deepest name that holds most of the time in ``times`` (``time_by_submodule``), with
    its share of the top level's total: ``("blocks.0", 0.81)``. None when nothing was timed."""
    total = sum(seconds for name, seconds in times.items() if "." not in name)
    if total <= 0:
        return None
    name = max((n for n in times if "." not in n), key=times.get)
    children = {n: s for n, s in times.items() if n.startswith(name + ".")}
    if children:
        child = max(children, key=children.get)
        if children[child] >= 0.5 * times[name]:
            name = child
    return name, times[name] / total
