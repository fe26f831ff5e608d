"""Check of ``linear_beta_schedule``: the DDPM betas, against diffusers'
``DDPMScheduler(beta_schedule="linear").betas``."""

from __future__ import annotations

import torch

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.diffusion._ddpm import check_steps, ddpm_scheduler, forbid


def _reference_linear(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02):
    check_steps(num_steps)
    return ddpm_scheduler(num_steps, beta_start=beta_start, beta_end=beta_end,
                          beta_schedule="linear").betas


def _linear_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    keyword = ["beta_start", "beta_end"]
    cases = [
        Case("1000 steps, the DDPM defaults", {"num_steps": 1000}),
        Case("200 steps, beta from 5e-4 to 0.1",
             {"num_steps": 200, "beta_start": 5e-4, "beta_end": 0.1}, keyword=keyword),
        Case("7 steps", {"num_steps": 7}),
        Case("0 steps, which it must refuse", {"num_steps": 0}, raises=ValueError),
    ]
    if hidden:
        cases += [
            Case("1 step", {"num_steps": 1}),
            Case("2 steps, beta from 1e-3 to 0.05",
                 {"num_steps": 2, "beta_start": 1e-3, "beta_end": 0.05}, keyword=keyword),
            Case("50 steps", {"num_steps": 50}),
            Case("-3 steps, which it must refuse", {"num_steps": -3}, raises=ValueError),
        ]
    return cases


def _arange_linear(num_steps, beta_start=1e-4, beta_end=0.02):
    return beta_start + (beta_end - beta_start) * torch.arange(num_steps) / num_steps


linear_beta_schedule = Check(
    exercise="linear_beta_schedule",
    reference=_reference_linear,
    cases=_linear_cases,
    mistakes=[
        Mistake("the last beta must be exactly beta_end: num_steps values from beta_start to "
                "beta_end *inclusive* (torch.linspace), not arange(num_steps) / num_steps.",
                _arange_linear),
        Mistake("beta_start and beta_end are swapped: the noise added per step grows with t.",
                lambda n, beta_start=1e-4, beta_end=0.02: torch.linspace(beta_end, beta_start, n)),
        Mistake("return float32, as diffusers does (torch.linspace(..., dtype=torch.float32)).",
                lambda n, beta_start=1e-4, beta_end=0.02: torch.linspace(
                    beta_start, beta_end, n, dtype=torch.float64)),
        Mistake("that is Stable Diffusion's 'scaled_linear' schedule (linear in sqrt(beta)); "
                "this one is linear in beta.",
                lambda n, beta_start=1e-4, beta_end=0.02: torch.linspace(
                    beta_start ** 0.5, beta_end ** 0.5, n) ** 2),
    ],
    forbidden=forbid("Use torch.linspace."),
)
