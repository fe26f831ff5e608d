"""The small training loop the notebooks share, and batched prediction.

Notebook 01 writes this loop out once; later notebooks call ``train`` so that their lessons
are about the model, not the loop. Everything is a tensor held in memory: with the tiny
models of this course, a Python ``DataLoader`` would cost more than the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm


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


def train(model: nn.Module, loss_fn: Callable[..., torch.Tensor],
          tensors: Sequence[torch.Tensor], *, epochs: int, batch_size: int, lr: float,
          weight_decay: float = 0.01, warmup: float = 0.05, device: torch.device | str = "cpu",
          seed: int = 0, desc: str = "training", optimizer: torch.optim.Optimizer | None = None,
          ) -> list[float]:
    """Train ``model`` with AdamW and a warm-up + cosine schedule; return the loss per step.

    Args:
        loss_fn: ``loss_fn(model, *batch) -> scalar loss``, where ``batch`` holds one
            mini-batch of each of ``tensors`` (already on ``device``).
        tensors: equally long tensors, e.g. ``(images, labels)``; moved to ``device`` once.
        epochs, batch_size, lr, weight_decay: the usual; ``warmup`` is the warm-up fraction.
        seed: seeds the order of the mini-batches (initial weights are the caller's).
        optimizer: overrides AdamW (then ``lr`` and ``weight_decay`` are the caller's too).
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
    with tqdm(total=total, desc=desc, unit="step") as progress:
        for _ in range(epochs):
            for batch in batches(tensors, batch_size, generator):
                loss = loss_fn(model, *batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
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
