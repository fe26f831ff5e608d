"""Check of ``p_sample_step``: one reverse step (Ho et al. 2020, eqs. 15 and 7), against
diffusers' ``DDPMScheduler.step`` ("fixed_small", clip_sample=True) given the same noise."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from unittest import mock

import torch

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.diffusion._ddpm import (
    CLIP_SAMPLE,
    alpha_bar,
    case_schedule,
    ddpm_scheduler,
    forbid,
)


@contextlib.contextmanager
def _given_noise(noise: torch.Tensor) -> Iterator[None]:
    """Make ``DDPMScheduler.step`` use ``noise`` as its ``variance_noise`` (it draws it with
    ``randn_tensor``): the library's own step, with the noise the student was given."""
    import diffusers.schedulers.scheduling_ddpm as ddpm

    with mock.patch.object(ddpm, "randn_tensor", lambda *args, **kwargs: noise):
        yield


def _check_step_inputs(model_output, t, x_t, betas) -> None:
    if model_output.shape != x_t.shape:
        raise ValueError("model_output must have the shape of x_t")
    if not 0 <= int(t) < len(betas):
        raise ValueError("t must be in 0 .. T-1")


def _reference_step(model_output, t, x_t, betas, alphas_cumprod, noise):
    _check_step_inputs(model_output, t, x_t, betas)
    scheduler = ddpm_scheduler(len(betas), alphas_cumprod)
    with _given_noise(noise):
        return scheduler.step(model_output, int(t), x_t).prev_sample


def reverse_step(model_output, t, x_t, betas, abar, noise, *, sign=1.0, std_power=0.5,
                 variance="small", wrap=False, clip=CLIP_SAMPLE):
    """One reverse step (x_0 prediction, then the posterior, Ho et al. eqs. 15 and 7), with
    switches that make the common mistakes."""
    abar_t = abar[t]
    abar_prev = abar[t - 1] if (t > 0 or wrap) else torch.ones_like(abar_t)
    beta_t = betas[t]
    # 1. predict x_0 from the noise (Ho et al. 2020, eq. 15), clipped to [-1, 1]
    x0 = (x_t - sign * (1 - abar_t).sqrt() * model_output) / abar_t.sqrt()
    if clip:
        x0 = x0.clamp(-1, 1)
    # 2. the posterior mean mu-tilde_t(x_t, x_0) (eq. 7)
    mean = (abar_prev.sqrt() * beta_t / (1 - abar_t)) * x0 \
        + ((1 - beta_t).sqrt() * (1 - abar_prev) / (1 - abar_t)) * x_t
    if t == 0 and not wrap:
        return mean
    # 3. add sigma_t * noise, sigma_t^2 = beta-tilde_t (eq. 7; "fixed_small")
    var = beta_t if variance == "large" else (1 - abar_prev) / (1 - abar_t) * beta_t
    return mean + var.clamp_min(1e-20) ** std_power * noise


def _step_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def case(name, shape, num_steps, t, dtype=torch.float32, kind="linear", **kwargs):
        betas = case_schedule(num_steps, dtype, kind)
        inputs = {
            "model_output": torch.randn(shape, generator=generator, dtype=dtype),
            "t": t,
            "x_t": torch.randn(shape, generator=generator, dtype=dtype),
            "betas": betas,
            "alphas_cumprod": alpha_bar(betas),
            "noise": torch.randn(shape, generator=generator, dtype=dtype),
        }
        return Case(name, inputs, grad=["model_output", "x_t"], **kwargs)

    # float32: diffusers recomputes beta_t = 1 - abar_t / abar_{t-1}, which at small t
    # differs from betas[t] by ~1e-3 relative; either way is right
    loose = (2e-3, 2e-3)
    cases = [
        case("t = 0 (no noise is added), T = 1000", (2, 3, 4, 4), 1000, 0, tolerance=loose),
        case("t = 1, T = 1000", (2, 3, 4, 4), 1000, 1, tolerance=loose),
        case("t = 500 (middle), T = 1000", (2, 3, 5, 3), 1000, 500, tolerance=loose),
        case("t = 999 (the last), T = 1000", (1, 3, 4, 4), 1000, 999, tolerance=loose),
        case("t = 100, cosine schedule, T = 200, float64", (3, 2, 3, 5), 200, 100,
             dtype=torch.float64, kind="cosine"),
        case("t = 1000 with T = 1000, which it must refuse", (1, 1, 2, 2), 1000, 1000,
             raises=ValueError),
    ]
    if hidden:
        cases += [
            case("t = 0, cosine schedule, T = 200, float64", (2, 3, 4, 4), 200, 0,
                 dtype=torch.float64, kind="cosine"),
            case("t = 1, cosine schedule, T = 200, float64", (2, 3, 4, 4), 200, 1,
                 dtype=torch.float64, kind="cosine"),
            case("t = 199 (the last), cosine schedule, T = 200", (4, 1, 3, 3), 200, 199,
                 tolerance=loose),
            case("t = 3, T = 50, batch 1, float64", (1, 3, 7, 2), 50, 3, dtype=torch.float64),
            case("model_output of another shape, which it must refuse", (2, 3, 4, 4), 10, 2,
                 raises=ValueError),
        ]
        cases[-1].inputs["model_output"] = cases[-1].inputs["model_output"][:1]
    return cases


p_sample_step = Check(
    exercise="p_sample_step",
    reference=_reference_step,
    cases=_step_cases,
    mistakes=[
        Mistake("wrong sign in the reverse step: the predicted noise is *subtracted*, "
                "x_0 = (x_t - sqrt(1 - alpha-bar_t) eps) / sqrt(alpha-bar_t).",
                functools.partial(reverse_step, sign=-1.0)),
        Mistake("no noise is added at t = 0: the last step returns the posterior mean "
                "(and alphas_cumprod[t - 1] at t = 0 is alphas_cumprod[-1], the *last* "
                "value: use alpha-bar_{-1} = 1).",
                functools.partial(reverse_step, wrap=True)),
        Mistake("beta-tilde_t is the variance; the noise is scaled by its square root, the "
                "standard deviation sigma_t = sqrt(beta-tilde_t).",
                functools.partial(reverse_step, std_power=1.0)),
        Mistake("that is the 'fixed_large' variance sigma_t^2 = beta_t; this step uses the "
                "posterior variance beta-tilde_t = (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) "
                "beta_t ('fixed_small', Ho et al. eq. 7).",
                functools.partial(reverse_step, variance="large")),
        Mistake("clip the predicted x_0 to [-1, 1] before the posterior mean (Ho et al.'s "
                "code, diffusers' clip_sample=True).",
                functools.partial(reverse_step, clip=False)),
    ],
    forbidden=forbid("Write the two formulas (x_0 prediction, posterior mean) yourself."),
)
