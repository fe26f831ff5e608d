"""Seeded random inputs, shared by the checks of notebook 03_similarity_contrastive."""

from __future__ import annotations

import torch


def randn(generator: torch.Generator, *shape: int, dtype=torch.float32) -> torch.Tensor:
    """A ``shape`` tensor of standard normal values drawn from ``generator``."""
    return torch.randn(shape, generator=generator, dtype=dtype)
