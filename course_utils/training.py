"""The small training loop the notebooks share, and batched prediction.

Notebook 01 writes this loop out once; later notebooks call ``train`` so that their lessons
are about the model, not the loop. Everything is a tensor held in memory: with the tiny
models of this course, a Python ``DataLoader`` would cost more than the model.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from course_utils import speed

#: Steps ``StepTimer`` does not time: the first steps of a new model allocate memory and pick
#: kernels, and can be ten times slower than the rest.
WARMUP_STEPS = 2
#: Steps timed before ``StepTimer`` says how long the run will take (their median).
PROBE_STEPS = 3
#: Steps timed before it judges the speed: the *fastest* of them must be this many times
#: slower than the reference implementation's step, on this machine, to be called slow (a
#: correct but loop-based implementation is typically 10–100× slower; a busy moment of the
#: machine slows some steps, not all of them).
CONFIRM_STEPS = 10
SLOW = 3.0
#: Runs expected to take less than this many seconds are not announced.
ANNOUNCE_FROM_S = 20.0


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int,
                  warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base learning rate, then a cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def batches(tensors: Sequence[torch.Tensor], batch_size: int, generator: torch.Generator,
            drop_last: bool = True):
    """Shuffled mini-batches ``(t[idx] for t in tensors)`` of one epoch."""
    n = len(tensors[0])
    order = torch.randperm(n, generator=generator).to(tensors[0].device)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield tuple(t[idx] for t in tensors)


def duration(seconds: float) -> str:
    """"40 s", "3.5 min", "1.2 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class StepTimer:
    """Says, a few steps into a training run, how long the whole run will take on this
    machine, and whether the model is far slower than the reference implementation.

    ``train`` uses one; a hand-written loop (notebook 01) calls ``tick()`` after each step::

        timer = StepTimer(total_steps, reference_step_s=0.004, model=model)
        for step in range(total_steps):
            ...  # one optimizer step
            timer.tick(probe=lambda: model(x))  # a forward pass on this step's batch

    Args:
        total_steps: the steps the run will take.
        reference_step_s: seconds one step of the solution's code takes on the reference
            machine (``course_utils.speed``); scaled by this machine's speed, it says what
            "fast enough" is here. None: only the duration is announced.
        model: the model being trained; with ``probe``, the slow submodule is named.
        device: where the model runs (the reference comparison is made on the CPU only).
        desc: the run's name, as on its progress bar.
        write: where the lines go (``tqdm.write`` keeps a progress bar intact).
    """

    def __init__(self, total_steps: int, *, reference_step_s: float | None = None,
                 model: nn.Module | None = None, device: torch.device | str = "cpu",
                 desc: str = "training", write: Callable[[str], None] = tqdm.write):
        self.total_steps, self.reference_step_s = total_steps, reference_step_s
        self.model, self.device, self.desc, self.write = model, torch.device(device), desc, write
        self.step = 0
        self.times: list[float] = []  # seconds of the timed steps
        self.last = time.perf_counter()

    def tick(self, probe: Callable[[], object] | None = None) -> None:
        """Mark the end of one step. After ``PROBE_STEPS`` timed steps, say how long the run
        will take (runs of ``ANNOUNCE_FROM_S`` or more); after ``CONFIRM_STEPS``, say whether
        the model is far slower than the reference (``probe``, called only then, runs one
        forward pass so that the time of each submodule can be measured)."""
        now = time.perf_counter()
        if self.step >= WARMUP_STEPS and len(self.times) < CONFIRM_STEPS:
            self.times.append(now - self.last)
            if len(self.times) == PROBE_STEPS:
                total = statistics.median(self.times) * self.total_steps
                if total >= ANNOUNCE_FROM_S:
                    self.write(f"{self.desc}: {self.total_steps} steps, about "
                               f"{duration(total)} on this machine.")
            if len(self.times) == CONFIRM_STEPS:
                verdict = self.judge(min(self.times), probe)
                if verdict:
                    self.write(verdict)
        self.step += 1
        self.last = time.perf_counter()

    def judge(self, step_s: float, probe: Callable[[], object] | None) -> str:
        """What to tell a student whose steps take at least ``step_s`` seconds: "" unless that
        is ``SLOW`` times the reference implementation's step on this machine's CPU."""
        if not self.reference_step_s or self.device.type != "cpu":
            return ""
        expected = self.reference_step_s * speed.machine_factor()
        if step_s <= SLOW * expected:
            return ""
        part = self.slow_part(probe)
        where = f" Most of the forward pass is spent in `{part[0]}` ({100 * part[1]:.0f} %)." \
            if part else ""
        return (f"{self.desc}: one step takes {step_s:.3g} s, {step_s / expected:.0f}× the "
                f"reference implementation's {expected:.2g} s on this machine: the "
                f"{self.total_steps} steps will take about {duration(step_s * self.total_steps)}"
                f" instead of {duration(expected * self.total_steps)}.\n"
                f"Your code is probably correct but slow.{where} Look there for Python loops "
                "over the batch, the positions or the heads, and replace them with tensor "
                "operations; or interrupt, fix and run again.")

    def slow_part(self, probe: Callable[[], object] | None) -> tuple[str, float] | None:
        if probe is None or self.model is None:
            return None
        # Measured without changing the run: no gradients, no batch statistics, same RNG.
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                times = speed.time_by_submodule(self.model, probe)
        finally:
            self.model.train(was_training)
        return speed.slowest_part(times)


def train(model: nn.Module, loss_fn: Callable[..., torch.Tensor],
          tensors: Sequence[torch.Tensor], *, epochs: int, batch_size: int, lr: float,
          weight_decay: float = 0.01, warmup: float = 0.05, device: torch.device | str = "cpu",
          seed: int = 0, desc: str = "training", optimizer: torch.optim.Optimizer | None = None,
          reference_step_s: float | None = None,
          on_step: Callable[[int, nn.Module], None] | None = None) -> list[float]:
    """Train ``model`` with AdamW and a warm-up + cosine schedule; return the loss per step.

    Args:
        loss_fn: ``loss_fn(model, *batch) -> scalar loss``, where ``batch`` holds one
            mini-batch of each of ``tensors`` (already on ``device``).
        tensors: equally long tensors, e.g. ``(images, labels)``; moved to ``device`` once.
        epochs, batch_size, lr, weight_decay: the usual; ``warmup`` is the warm-up fraction.
        seed: seeds the order of the mini-batches (initial weights are the caller's).
        optimizer: overrides AdamW (then ``lr`` and ``weight_decay`` are the caller's too).
        reference_step_s: seconds one step takes with the solution's code on the reference
            machine: a few steps in, ``train`` says how long the run will take here and, when
            the model is far slower than that (``StepTimer``), where the time goes.
        on_step: ``on_step(step, model)``, called after every optimizer step (``step`` counts
            from 0), e.g. to update an exponential moving average of the weights.
    """
    __tracebackhide__ = True  # IPython leaves this frame out: an error is in the caller's code
    if len({len(t) for t in tensors}) != 1:
        raise ValueError(f"tensors differ in length: {[len(t) for t in tensors]}")
    tensors = [t.to(device) for t in tensors]
    model.to(device).train()
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, len(tensors[0]) // batch_size)
    total = epochs * steps_per_epoch
    scheduler = warmup_cosine(optimizer, total, max(1, int(warmup * total)))
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    timer = StepTimer(total, reference_step_s=reference_step_s, model=model, device=device,
                      desc=desc)
    with tqdm(total=total, desc=desc, unit="step") as progress:
        for _ in range(epochs):
            for batch in batches(tensors, batch_size, generator):
                loss = loss_fn(model, *batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                if on_step is not None:
                    on_step(len(losses), model)
                losses.append(loss.item())
                timer.tick(probe=lambda batch=batch: loss_fn(model, *batch))
                progress.update()
                if len(losses) % 10 == 0:
                    progress.set_postfix(loss=f"{sum(losses[-10:]) / 10:.3f}")
    model.eval()
    return losses


@torch.no_grad()
def predict(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor, batch_size: int = 512,
            device: torch.device | str = "cpu") -> torch.Tensor:
    """``fn`` applied to ``tensors`` in batches (no gradients), concatenated on the CPU.

    ``fn`` is a model in eval mode or any function of one batch, e.g. ``model.encode_image``.
    """
    __tracebackhide__ = True  # IPython leaves this frame out: an error is in ``fn``
    outputs = []
    for start in range(0, len(tensors[0]), batch_size):
        batch = [t[start:start + batch_size].to(device) for t in tensors]
        outputs.append(fn(*batch).cpu())
    return torch.cat(outputs)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of rows whose arg-max is the label."""
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"expected logits (N, K) and labels (N,), got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    return (logits.argmax(dim=1) == labels.to(logits.device)).float().mean().item()
