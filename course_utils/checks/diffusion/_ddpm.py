"""What the diffusion exercises share: diffusers' DDPMScheduler as the reference, diffusers
refused while the student's code runs, and the noise schedules the test cases use."""

from __future__ import annotations

import math

import torch

from course_utils.checks.forbid import Forbidden

#: p_sample_step and sample clip the predicted x_0 to [-1, 1], as Ho et al.'s code and
#: diffusers' DDPMScheduler (clip_sample=True, its default) do.
CLIP_SAMPLE = True

#: The cosine schedule clips every beta at this value (diffusers' max_beta).
MAX_BETA = 0.999

_DDPM = "diffusers.schedulers.scheduling_ddpm"


def forbid(allowed: str) -> Forbidden:
    """diffusers' schedulers and timestep embedding, refused by their code, however they were
    reached (a name bound by ``from diffusers... import`` before the check included).

    Only ``code``: ``Forbidden`` resolves ``code`` after replacing ``attributes`` by stubs, so
    an object named in both would be watched as its stub."""
    return Forbidden(
        code=[f"{_DDPM}.DDPMScheduler", f"{_DDPM}.betas_for_alpha_bar",
              "diffusers.models.embeddings.get_timestep_embedding",
              "diffusers.schedulers.scheduling_ddim.DDIMScheduler"],
        allowed=allowed,
    )


def ddpm_scheduler(num_steps: int, alphas_cumprod: torch.Tensor | None = None, **config):
    """A DDPMScheduler; given ``alphas_cumprod``, it uses exactly those values, in their dtype
    and on their device (diffusers keeps float32 otherwise, which would make float64 cases
    only float32-accurate)."""
    from diffusers import DDPMScheduler

    config.setdefault("variance_type", "fixed_small")
    config.setdefault("clip_sample", CLIP_SAMPLE)
    made = DDPMScheduler(num_train_timesteps=num_steps, **config)
    if alphas_cumprod is not None:
        made.alphas_cumprod = alphas_cumprod.detach()
        made.one = torch.ones((), dtype=alphas_cumprod.dtype, device=alphas_cumprod.device)
    return made


def check_steps(num_steps) -> None:
    """The schedules' input validation: ``num_steps`` must be a positive int."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError("num_steps must be a positive int")


def cosine_formula(num_steps: int, s: float = 0.008, clip: bool = True,
                   what: str = "betas") -> torch.Tensor:
    """Nichol & Dhariwal (2021), eq. 17, discretised as diffusers does, in float64; returns
    the (T,) float32 betas, or with ``what="alphas_cumprod"`` alpha-bar_t = f(t) / f(0)."""
    def f(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    if what == "alphas_cumprod":
        return torch.tensor([f((i + 1) / num_steps) / f(0) for i in range(num_steps)],
                            dtype=torch.float32)
    betas = [1 - f((i + 1) / num_steps) / f(i / num_steps) for i in range(num_steps)]
    if clip:
        betas = [min(b, MAX_BETA) for b in betas]
    return torch.tensor(betas, dtype=torch.float32)


def case_schedule(num_steps: int, dtype=torch.float32, kind: str = "linear") -> torch.Tensor:
    """The (T,) betas of a test case (float64 computed, then cast)."""
    if kind == "cosine":
        return cosine_formula(num_steps).to(dtype)
    scale = min(1000 / num_steps, 10)  # the DDPM schedule stretched to fewer steps
    return torch.linspace(1e-4 * scale, 0.02 * scale, num_steps, dtype=torch.float64).to(dtype)


def alpha_bar(betas: torch.Tensor) -> torch.Tensor:
    """alpha-bar_t = prod_{s <= t} (1 - beta_s), shape (T,)."""
    return torch.cumprod(1 - betas, dim=0)
