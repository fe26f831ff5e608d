"""Check of ``sample``: the DDPM chain with classifier-free guidance, against diffusers'
``DDPMScheduler`` stepping the whole chain on a stub denoiser with the same generator."""

from __future__ import annotations

import torch

from course_utils.checks.case import Case, Mistake, Outputs
from course_utils.checks.core import Check
from course_utils.checks.diffusion._ddpm import alpha_bar, case_schedule, ddpm_scheduler, forbid
from course_utils.checks.diffusion._stub import stub_for
from course_utils.checks.diffusion.p_sample_step import reverse_step
from course_utils.checks.runners import clone_inputs, collect, expect_raise


def _reference_sample(model, cond, betas, guidance_scale, generator=None):
    """The DDPM chain (Ho et al. 2020, Algorithm 2) with classifier-free guidance (Ho &
    Salimans 2022), stepped by diffusers' DDPMScheduler."""
    from diffusers.utils.torch_utils import randn_tensor

    if betas.ndim != 1:
        raise ValueError("betas must be a (T,) tensor")
    device, dtype = cond.device, betas.dtype
    betas = betas.to(device)
    scheduler = ddpm_scheduler(len(betas), alpha_bar(betas))
    batch = cond.shape[0]
    x = randn_tensor((batch, *model.image_shape), generator=generator, device=device,
                     dtype=dtype)
    null = torch.zeros_like(cond)
    for t in scheduler.timesteps.tolist():  # T-1, ..., 0
        steps = torch.full((batch,), t, dtype=torch.long, device=device)
        eps_cond, eps_uncond = model(x, steps, cond), model(x, steps, null)
        eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        x = scheduler.step(eps, t, x, generator=generator).prev_sample
    return x


def _run_sample(implementation, case: Case) -> Outputs:
    """Run ``sample`` on the case's stub denoiser, with a generator seeded by the case (or
    none) and the global random state seeded too (and restored afterwards)."""
    inputs = clone_inputs(case)
    cond, betas = inputs["cond"], inputs["betas"]
    model = stub_for(case, len(betas))
    generator = None
    if inputs["seed"] is not None:
        generator = torch.Generator(device=cond.device).manual_seed(inputs["seed"])

    def call():
        return implementation(model, cond, betas, inputs["guidance_scale"], generator=generator)

    with torch.random.fork_rng(devices=[cond.device] if cond.device.type == "cuda" else []):
        torch.manual_seed(inputs["global_seed"])
        if case.raises is not None:
            return expect_raise(call, case)
        return collect(call())


def _sample_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def case(name, batch, shape, num_steps, guidance_scale, dtype=torch.float32,
             kind="linear", seed=True, **kwargs):
        cond = torch.randint(1, 30, (batch, 4), generator=generator)
        cond[:, 2:] = 0
        inputs = {
            "cond": cond,
            "betas": case_schedule(num_steps, dtype, kind),
            "guidance_scale": guidance_scale,
            "pattern": torch.randn(shape, generator=generator, dtype=dtype),
            "words": torch.randn(4, generator=generator, dtype=dtype) / 10,
            "seed": int(torch.randint(0, 2**31, (1,), generator=generator)) if seed else None,
            "global_seed": int(torch.randint(0, 2**31, (1,), generator=generator)),
        }
        return Case(name, inputs, tolerance=(1e-4, 1e-4) if dtype == torch.float32 else None,
                    **kwargs)

    cases = [
        case("guidance scale 1 (the plain conditional model), T = 10", 3, (3, 4, 4), 10, 1.0),
        case("guidance scale 3, T = 10", 3, (3, 4, 4), 10, 3.0),
        case("guidance scale 0 (the unconditional model only), T = 10", 2, (3, 4, 4), 10, 0.0),
        case("guidance scale 2.5, cosine schedule, T = 20, one (1, 5, 3) image", 1, (1, 5, 3),
             20, 2.5, kind="cosine"),
        case("betas of shape (T, 1), which it must refuse", 2, (3, 2, 2), 5, 1.0,
             raises=ValueError),
    ]
    cases[-1].inputs["betas"] = cases[-1].inputs["betas"][:, None]  # (T, 1)
    if hidden:
        cases += [
            case("guidance scale 5, float64, T = 30", 4, (3, 3, 3), 30, 5.0,
                 dtype=torch.float64),
            case("no generator (the global random state), guidance scale 2, T = 8", 2,
                 (2, 3, 3), 8, 2.0, seed=False),
            case("guidance scale 1.5, T = 1", 3, (3, 2, 2), 1, 1.5),
        ]
    return cases


def _guided(convention: str):
    """A whole chain written like a student's, with one of the common mistakes."""
    def implementation(model, cond, betas, guidance_scale, generator=None):
        if convention == "global":
            generator = None
        device, batch = cond.device, cond.shape[0]
        betas = betas.to(device)
        abar = alpha_bar(betas)
        shape = (batch, *model.image_shape)
        x = torch.randn(shape, generator=generator, device=device, dtype=betas.dtype)
        timesteps = range(len(betas) - 1, -1, -1)
        if convention == "ascending":
            timesteps = range(len(betas))
        for t in timesteps:
            steps = torch.full((batch,), t, dtype=torch.long, device=device)
            eps_c, eps_u = model(x, steps, cond), model(x, steps, torch.zeros_like(cond))
            if convention == "plus one":
                eps = (1 + guidance_scale) * eps_c - guidance_scale * eps_u
            elif convention == "conditional only":
                eps = eps_c
            elif convention == "swapped":
                eps = eps_c + guidance_scale * (eps_u - eps_c)
            else:
                eps = eps_u + guidance_scale * (eps_c - eps_u)
            noise = (torch.randn(shape, generator=generator, device=device, dtype=x.dtype)
                     if t > 0 else torch.zeros_like(x))
            x = reverse_step(eps, t, x, betas, abar, noise)
        return x

    return implementation


sample = Check(
    exercise="sample",
    reference=_reference_sample,
    cases=_sample_cases,
    run=_run_sample,
    mistakes=[
        Mistake("the guided estimate is eps_uncond + s (eps_cond - eps_uncond): s = 1 is the "
                "plain conditional model, s = 0 the unconditional one (diffusers' "
                "guidance_scale); (1 + s) eps_cond - s eps_uncond is the same idea with s "
                "shifted by one.", _guided("plus one")),
        Mistake("guidance is missing: combine the conditional and the unconditional (null "
                "caption) estimates, eps_uncond + s (eps_cond - eps_uncond).",
                _guided("conditional only")),
        Mistake("the two estimates are swapped: eps_uncond + s (eps_cond - eps_uncond) moves "
                "*towards* the caption.", _guided("swapped")),
        Mistake("the reverse chain runs from t = T - 1 down to t = 0.", _guided("ascending")),
        Mistake("draw all the noise (x_T and every step's noise) from `generator`, so that "
                "a seed makes the samples reproducible.", _guided("global")),
    ],
    forbidden=forbid("Use your p_sample_step."),
)
