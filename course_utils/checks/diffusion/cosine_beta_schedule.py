"""Check of ``cosine_beta_schedule``: Nichol & Dhariwal's cosine betas, against diffusers'
``DDPMScheduler(beta_schedule="squaredcos_cap_v2").betas`` (eq. 17 in float64 for other s)."""

from __future__ import annotations

import math

import torch

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.diffusion._ddpm import (
    MAX_BETA,
    check_steps,
    cosine_formula,
    ddpm_scheduler,
    forbid,
)


def _reference_cosine(num_steps: int, s: float = 0.008) -> torch.Tensor:
    check_steps(num_steps)
    if s == 0.008:  # diffusers' squaredcos_cap_v2 hard-codes s = 0.008
        return ddpm_scheduler(num_steps, beta_schedule="squaredcos_cap_v2").betas
    return cosine_formula(num_steps, s)


def _cosine_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    cases = [
        Case("1000 steps", {"num_steps": 1000}),
        Case("200 steps", {"num_steps": 200}),
        Case("7 steps", {"num_steps": 7}),
        Case("0 steps, which it must refuse", {"num_steps": 0}, raises=ValueError),
    ]
    if hidden:
        cases += [
            Case("1 step", {"num_steps": 1}),
            Case("3 steps", {"num_steps": 3}),
            Case("50 steps with s=0.02", {"num_steps": 50, "s": 0.02}, keyword=["s"]),
        ]
    return cases


def _cosine_in_float32(num_steps: int, s: float = 0.008) -> torch.Tensor:
    u = torch.arange(num_steps + 1, dtype=torch.float32) / num_steps  # (T + 1,)
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # (T + 1,)
    return (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)


cosine_beta_schedule = Check(
    exercise="cosine_beta_schedule",
    reference=_reference_cosine,
    cases=_cosine_cases,
    # float32 output, float64 accuracy: a schedule computed in float32 is off by ~0.2 % in its
    # first betas (T = 1000), far more than one float32 rounding (6e-8)
    tolerance=(1e-5, 1e-9),
    mistakes=[
        Mistake("computed in float32: 1 - f((t+1)/T) / f(t/T) divides two numbers close to 1 "
                "and keeps only a few digits of the small first betas (off by ~0.2 % at "
                "T = 1000). Compute in float64 (torch.arange(..., dtype=torch.float64) or "
                "Python floats), then return .to(torch.float32).",
                _cosine_in_float32),
        Mistake("clip every beta at 0.999: the last step would otherwise have beta = 1 "
                "(alpha-bar reaches 0), which breaks the reverse step's 1/sqrt(alpha_t).",
                lambda n, s=0.008: cosine_formula(n, s, clip=False)),
        Mistake("that is alpha-bar_t = f(t)/f(0); the betas are 1 - alpha-bar_t / "
                "alpha-bar_{t-1} (Nichol & Dhariwal 2021, eq. 17 and the line after).",
                lambda n, s=0.008: cosine_formula(n, s, what="alphas_cumprod")),
        Mistake("keep the offset s: f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2); without it "
                "the first betas are far too small.",
                lambda n, s=0.008: cosine_formula(n, 0.0)),
    ],
    forbidden=forbid("Use math.cos or torch.cos, in float64, and return float32."),
)
