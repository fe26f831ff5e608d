"""Check of ``timestep_embedding``: the sinusoidal embedding of DDPM, against diffusers'
``get_timestep_embedding`` with its defaults ([sin | cos], odd widths padded at the end)."""

from __future__ import annotations

import math

import torch

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.diffusion._ddpm import forbid


def _reference_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    from diffusers.models.embeddings import get_timestep_embedding

    if t.ndim != 1:
        raise ValueError("expected t of shape (B,)")
    if dim < 4:
        raise ValueError("dim must be at least 4")
    return get_timestep_embedding(t, dim)


def _embedding(t, dim, shift=1.0, flip=False, interleave=False, pad_front=False):
    """The embedding written out, with switches that make the common mistakes."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device)
    frequencies = torch.exp(exponent / (half - shift))
    angles = t[:, None].float() * frequencies[None, :]  # (B, half)
    parts = [angles.cos(), angles.sin()] if flip else [angles.sin(), angles.cos()]
    emb = torch.stack(parts, dim=-1).flatten(1) if interleave else torch.cat(parts, dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (1, 0) if pad_front else (0, 1))
    return emb


def _embedding_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def ints(n, high=1000):
        return torch.randint(0, high, (n,), generator=generator)

    cases = [
        Case("t = 0, 1, 37, 999, dim 8", {"t": torch.tensor([0, 1, 37, 999]), "dim": 8}),
        Case("5 random timesteps, dim 32", {"t": ints(5), "dim": 32}),
        Case("odd dim 7", {"t": ints(3), "dim": 7}),
        Case("fractional float timesteps, dim 16 (gradient w.r.t. t)",
             {"t": torch.rand(4, generator=generator) * 50, "dim": 16}, grad=["t"]),
        Case("t of shape (B, 1), which it must refuse",
             {"t": ints(3)[:, None], "dim": 8}, raises=ValueError),
    ]
    if hidden:
        cases += [
            Case("batch 1, dim 4 (two frequencies)", {"t": ints(1), "dim": 4}),
            Case("odd dim 33", {"t": ints(6), "dim": 33}),
            Case("dim 128", {"t": ints(8), "dim": 128}),
            Case("float64 timesteps, dim 10", {"t": ints(4).double(), "dim": 10}),
            Case("dim 2, which it must refuse (it needs two frequencies)",
                 {"t": ints(2), "dim": 2}, raises=ValueError),
        ]
    return cases


timestep_embedding = Check(
    exercise="timestep_embedding",
    reference=_reference_embedding,
    cases=_embedding_cases,
    # float32 angles up to 999 rad: computing the frequencies another way moves them ~1e-4
    tolerance=(1e-4, 3e-4),
    mistakes=[
        Mistake("sin/cos order: the first half is sin(t * w_i), the second half cos(t * w_i) "
                "(diffusers' default, flip_sin_to_cos=False).",
                lambda t, dim: _embedding(t, dim, flip=True)),
        Mistake("the frequencies run from 1 down to exactly 1/10000: w_i = "
                "10000^(-i / (half - 1)), i = 0 .. half-1 (divide by half - 1, not half).",
                lambda t, dim: _embedding(t, dim, shift=0.0)),
        Mistake("do not interleave sin and cos: concatenate [sin(t w_0..w_{h-1}) | "
                "cos(t w_0..w_{h-1})].",
                lambda t, dim: _embedding(t, dim, interleave=True)),
        Mistake("for an odd dim, pad one column of zeros at the *end*.",
                lambda t, dim: _embedding(t, dim, pad_front=True)),
    ],
    forbidden=forbid("Use torch.arange, torch.exp, sin and cos."),
)
