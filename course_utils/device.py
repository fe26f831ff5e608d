"""Where tensors live, and how to make a run repeatable."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

#: The environment variable that chooses the device instead: "cpu", "cuda" or "mps".
#: ``python -m course_utils bench --device`` sets it for the notebooks' kernels.
DEVICE_VARIABLE = "COURSE_DEVICE"


def get_device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    Every notebook calls this once (``device = course_utils.get_device()``) and moves its
    models and data there; all course code runs unchanged on any of the three.
    ``COURSE_DEVICE=cpu`` (or ``cuda``, ``mps``) in the environment chooses instead.

    Raises:
        ValueError: if COURSE_DEVICE names another device.
        RuntimeError: if COURSE_DEVICE names a device this machine does not have.
    """
    available = {"cuda": torch.cuda.is_available(), "mps": _mps_available(), "cpu": True}
    requested = os.environ.get(DEVICE_VARIABLE, "").strip().lower()
    if not requested:
        return torch.device(next(name for name, ok in available.items() if ok))
    if requested not in available:
        raise ValueError(f"{DEVICE_VARIABLE}={requested!r}: expected cpu, cuda or mps")
    if not available[requested]:
        raise RuntimeError(f"{DEVICE_VARIABLE}={requested} but torch {torch.__version__} sees "
                           f"no {requested} device here")
    return torch.device(requested)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


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
