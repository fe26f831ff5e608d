"""Check of ``q_sample``: the forward process in closed form, q(x_t | x_0) (Ho et al. 2020,
eq. 4), against diffusers' ``DDPMScheduler.add_noise``."""

from __future__ import annotations

import torch

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.diffusion._ddpm import alpha_bar, case_schedule, ddpm_scheduler, forbid


def _reference_q_sample(x0, t, noise, alphas_cumprod):
    if x0.ndim != 4:
        raise ValueError("expected x0 of shape (B, C, H, W)")
    if t.ndim != 1 or t.shape[0] != x0.shape[0]:
        raise ValueError("expected t of shape (B,)")
    if noise.shape != x0.shape:
        raise ValueError("noise must have the shape of x0")
    scheduler = ddpm_scheduler(len(alphas_cumprod), alphas_cumprod)
    return scheduler.add_noise(x0, noise, t)


def _q_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def case(name, shape, num_steps, dtype=torch.float32, kind="linear", t=None, **kwargs):
        x0 = torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1
        noise = torch.randn(shape, generator=generator, dtype=dtype)
        if t is None:
            t = torch.randint(0, num_steps, (shape[0],), generator=generator)
        abar = alpha_bar(case_schedule(num_steps, dtype, kind))
        return Case(name, {"x0": x0, "t": t, "noise": noise, "alphas_cumprod": abar},
                    grad=["x0", "noise"], **kwargs)

    cases = [
        case("a batch of 4 (3, 5, 7) images, T = 1000", (4, 3, 5, 7), 1000),
        case("t = 0 and t = T - 1, T = 200, cosine schedule", (2, 3, 4, 4), 200, kind="cosine",
             t=torch.tensor([0, 199])),
        case("batch 1, float64", (1, 2, 6, 3), 50, dtype=torch.float64),
        case("t of shape (B, 1), which it must refuse", (3, 1, 2, 2), 10,
             t=torch.zeros(3, 1, dtype=torch.long), raises=ValueError),
    ]
    if hidden:
        cases += [
            case("a batch of 9 one-channel 1x1 images, T = 7", (9, 1, 1, 1), 7),
            case("float64, cosine schedule, T = 1000", (5, 3, 8, 8), 1000, dtype=torch.float64,
                 kind="cosine"),
            case("one timestep for a batch of 3, which it must refuse", (3, 3, 4, 4), 10,
                 t=torch.tensor([1]), raises=ValueError),
        ]
    return cases


def _gather(values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return values.to(t.device)[t].view(-1, 1, 1, 1)  # (B, 1, 1, 1)


q_sample = Check(
    exercise="q_sample",
    reference=_reference_q_sample,
    cases=_q_cases,
    mistakes=[
        Mistake("missing square roots: x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) "
                "noise (Ho et al. 2020, eq. 4); the variances add up to 1, not the weights.",
                lambda x0, t, noise, abar: _gather(abar, t) * x0 + (1 - _gather(abar, t)) * noise),
        Mistake("the noise weight needs a square root too: sqrt(1 - alpha-bar_t).",
                lambda x0, t, noise, abar: _gather(abar, t).sqrt() * x0
                + (1 - _gather(abar, t)) * noise),
        Mistake("the weights are swapped: sqrt(alpha-bar_t) multiplies x_0 (the signal that "
                "fades), sqrt(1 - alpha-bar_t) the noise.",
                lambda x0, t, noise, abar: (1 - _gather(abar, t)).sqrt() * x0
                + _gather(abar, t).sqrt() * noise),
        Mistake("index alpha-bar with t itself (t runs from 0 to T - 1), not t - 1.",
                lambda x0, t, noise, abar: _gather(abar, t - 1).sqrt() * x0
                + (1 - _gather(abar, t - 1)).sqrt() * noise),
        Mistake("every image has its own timestep: use t[i] for image i, not t[0] for all.",
                lambda x0, t, noise, abar: _gather(abar, t[:1]).sqrt() * x0
                + (1 - _gather(abar, t[:1])).sqrt() * noise),
    ],
    forbidden=forbid("Index alphas_cumprod with t and reshape it to broadcast."),
)
