"""Where tensors live, and how to make a run repeatable."""

from __future__ import annotations

import random

import numpy as np
import torch


def get_device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    Every notebook calls this once (``device = course_utils.get_device()``) and moves its
    models and data there; all course code runs unchanged on any of the three.
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) random number generators.

    The same seed gives the same data, initial weights and batches on the same device and
    library versions. (GPU kernels may still differ in the last bits from the CPU's.)
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the legacy global generator that user code calls)
    torch.manual_seed(seed)  # also seeds every CUDA device
