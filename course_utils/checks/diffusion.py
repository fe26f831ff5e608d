"""Checks of notebook 06_diffusion: a denoising diffusion model, from the noise schedule to
text-to-image sampling with classifier-free guidance.

References (what the field uses, from diffusers):

- ``DDPMScheduler(beta_schedule="linear")`` and ``"squaredcos_cap_v2"``: the beta schedules;
- ``DDPMScheduler.add_noise``: the forward process in closed form, ``q(x_t | x_0)``;
- ``diffusers.models.embeddings.get_timestep_embedding`` with its defaults
  (``flip_sin_to_cos=False, downscale_freq_shift=1``): ``[sin | cos]``, frequencies
  ``10000^(-i / (half - 1))``, odd widths padded with one zero column at the end — the
  convention of Ho et al.'s DDPM code;
- ``DDPMScheduler.step`` with ``variance_type="fixed_small"`` and ``clip_sample=True`` (its
  defaults): one reverse step, given the same noise;
- the same scheduler stepping a whole chain with classifier-free guidance, for ``sample``.

``diffusion_loss`` draws its own timesteps, noise and dropout, so its check is statistical:
a stub model records what it receives, and the trusted side tests the recordings (the noise
is standard normal, the timesteps cover 0..T-1, about ``p_uncond`` of the captions are
dropped, the loss is the MSE against that very noise).

The trained model is graded by ``text_to_image``, a ``QualityCheck`` with a judge of its own
(``judge_images``): it renders every Shapes-world object (3 shapes x 5 colours x sizes x
sub-pixel positions, at 16 x 16) and names the class of the one that best explains each
generated image. It needs no training, cannot be swayed by the notebook, and is validated on
real images in tests/test_checks_diffusion.py.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from unittest import mock

import numpy as np
import torch
from torch import nn

from course_utils.checks.case import Case, Mistake, Outputs
from course_utils.checks.core import Check, QualityCheck
from course_utils.checks.failure import CheckFailure
from course_utils.checks.forbid import Forbidden
from course_utils.checks.runners import clone_inputs, collect

#: p_sample_step and sample clip the predicted x_0 to [-1, 1], as Ho et al.'s code and
#: diffusers' DDPMScheduler (clip_sample=True, its default) do.
CLIP_SAMPLE = True

# --- forbidding diffusers, however it is imported -------------------------------------------

_DDPM = "diffusers.schedulers.scheduling_ddpm"


def _forbid(allowed: str) -> Forbidden:
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


class _Check(Check):
    """A Check that names a mistake only when the values differ, not when a ValueError is
    missing (the mistakes do not validate their inputs either, so they would all match)."""

    def hint(self, case: Case, actual: Outputs, expected: Outputs | None = None) -> str | None:
        return None if case.raises is not None else super().hint(case, actual, expected)


# --- the reference: diffusers' DDPMScheduler ------------------------------------------------


def _scheduler(num_steps: int, alphas_cumprod: torch.Tensor | None = None, **config):
    """A DDPMScheduler; given ``alphas_cumprod``, it uses exactly those values, in their dtype
    and on their device (diffusers keeps float32 otherwise, which would make float64 cases
    only float32-accurate)."""
    from diffusers import DDPMScheduler

    config.setdefault("variance_type", "fixed_small")
    config.setdefault("clip_sample", CLIP_SAMPLE)
    scheduler = DDPMScheduler(num_train_timesteps=num_steps, **config)
    if alphas_cumprod is not None:
        scheduler.alphas_cumprod = alphas_cumprod.detach()
        scheduler.one = torch.ones((), dtype=alphas_cumprod.dtype, device=alphas_cumprod.device)
    return scheduler


@contextlib.contextmanager
def _given_noise(noise: torch.Tensor) -> Iterator[None]:
    """Make ``DDPMScheduler.step`` use ``noise`` as its ``variance_noise`` (it draws it with
    ``randn_tensor``): the library's own step, with the noise the student was given."""
    import diffusers.schedulers.scheduling_ddpm as ddpm

    with mock.patch.object(ddpm, "randn_tensor", lambda *args, **kwargs: noise):
        yield


def _check_steps(num_steps) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError("num_steps must be a positive int")


# --- linear_beta_schedule ---------------------------------------------------------------------


def _reference_linear(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02):
    _check_steps(num_steps)
    return _scheduler(num_steps, beta_start=beta_start, beta_end=beta_end,
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


linear_beta_schedule = _Check(
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
    forbidden=_forbid("Use torch.linspace."),
)


# --- cosine_beta_schedule ---------------------------------------------------------------------

MAX_BETA = 0.999


def _cosine_formula(num_steps: int, s: float = 0.008, clip: bool = True,
                    what: str = "betas") -> torch.Tensor:
    """Nichol & Dhariwal (2021), eq. 17, discretised as diffusers does, in float64."""
    def f(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    if what == "alphas_cumprod":
        return torch.tensor([f((i + 1) / num_steps) / f(0) for i in range(num_steps)],
                            dtype=torch.float32)
    betas = [1 - f((i + 1) / num_steps) / f(i / num_steps) for i in range(num_steps)]
    if clip:
        betas = [min(b, MAX_BETA) for b in betas]
    return torch.tensor(betas, dtype=torch.float32)


def _reference_cosine(num_steps: int, s: float = 0.008) -> torch.Tensor:
    _check_steps(num_steps)
    if s == 0.008:  # diffusers' squaredcos_cap_v2 hard-codes s = 0.008
        return _scheduler(num_steps, beta_schedule="squaredcos_cap_v2").betas
    return _cosine_formula(num_steps, s)


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


cosine_beta_schedule = _Check(
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
                lambda n, s=0.008: _cosine_formula(n, s, clip=False)),
        Mistake("that is alpha-bar_t = f(t)/f(0); the betas are 1 - alpha-bar_t / "
                "alpha-bar_{t-1} (Nichol & Dhariwal 2021, eq. 17 and the line after).",
                lambda n, s=0.008: _cosine_formula(n, s, what="alphas_cumprod")),
        Mistake("keep the offset s: f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2); without it "
                "the first betas are far too small.",
                lambda n, s=0.008: _cosine_formula(n, 0.0)),
    ],
    forbidden=_forbid("Use math.cos or torch.cos, in float64, and return float32."),
)


# --- q_sample ---------------------------------------------------------------------------------


def _check_x_t(x: torch.Tensor, t: torch.Tensor, name: str = "x0") -> None:
    if x.ndim != 4:
        raise ValueError(f"expected {name} of shape (B, C, H, W)")
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError("expected t of shape (B,)")


def _reference_q_sample(x0, t, noise, alphas_cumprod):
    _check_x_t(x0, t)
    if noise.shape != x0.shape:
        raise ValueError("noise must have the shape of x0")
    scheduler = _scheduler(len(alphas_cumprod), alphas_cumprod)
    return scheduler.add_noise(x0, noise, t)


def _schedule(num_steps: int, dtype=torch.float32, kind: str = "linear") -> torch.Tensor:
    """Betas of a test case (float64 computed, then cast)."""
    if kind == "cosine":
        return _cosine_formula(num_steps).to(dtype)
    scale = min(1000 / num_steps, 10)  # the DDPM schedule stretched to fewer steps
    return torch.linspace(1e-4 * scale, 0.02 * scale, num_steps, dtype=torch.float64).to(dtype)


def _alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    return torch.cumprod(1 - betas, dim=0)


def _q_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def case(name, shape, num_steps, dtype=torch.float32, kind="linear", t=None, **kwargs):
        x0 = torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1
        noise = torch.randn(shape, generator=generator, dtype=dtype)
        if t is None:
            t = torch.randint(0, num_steps, (shape[0],), generator=generator)
        abar = _alphas_cumprod(_schedule(num_steps, dtype, kind))
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
    return values.to(t.device)[t].view(-1, 1, 1, 1)


q_sample = _Check(
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
    forbidden=_forbid("Index alphas_cumprod with t and reshape it to broadcast."),
)


# --- timestep_embedding -----------------------------------------------------------------------


def _reference_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    from diffusers.models.embeddings import get_timestep_embedding

    if t.ndim != 1:
        raise ValueError("expected t of shape (B,)")
    if dim < 4:
        raise ValueError("dim must be at least 4")
    return get_timestep_embedding(t, dim)


def _embedding(t, dim, shift=1.0, flip=False, interleave=False, pad_front=False):
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device)
    frequencies = torch.exp(exponent / (half - shift))
    angles = t[:, None].float() * frequencies[None, :]
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


timestep_embedding = _Check(
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
    forbidden=_forbid("Use torch.arange, torch.exp, sin and cos."),
)


# --- stub denoisers (built by the checks from plain tensors) --------------------------------


class _StubDenoiser(nn.Module):
    """A fixed, cheap stand-in for a trained denoiser: ``model(x_t, t, cond) -> noise``.

    Row-wise (calling it on a batch or on its halves gives the same rows), and it depends on
    ``x_t``, ``t`` and the caption, so a wrong argument changes the result. A caption of all
    zeros (the null caption) gives the unconditional estimate. It records what it received.
    """

    def __init__(self, image_shape: Sequence[int], pattern: torch.Tensor,
                 words: torch.Tensor, num_steps: int):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.pattern, self.words, self.num_steps = pattern, words, num_steps
        self.scale = nn.Parameter(torch.ones((), dtype=pattern.dtype, device=pattern.device))
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(t) or t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"the model expects t as a (B,) tensor of timesteps, one per "
                             f"image; got {t!r:.60}")
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"the model expects integer timesteps (an embedding table and "
                             f"the schedule are indexed by them), got {t.dtype}: build them "
                             f"with torch.full((B,), t, dtype=torch.long)")
        if tuple(x.shape[1:]) != self.image_shape or cond.shape[0] != x.shape[0]:
            raise ValueError(f"the model expects x of shape (B, {self.image_shape}) and cond "
                             f"of shape (B, L); got {tuple(x.shape)} and {tuple(cond.shape)}")
        text = torch.tanh(cond.to(self.words.dtype) @ self.words)  # (B,): 0 for a null caption
        time = (t.to(x.dtype) / self.num_steps)[:, None, None, None]  # (B, 1, 1, 1)
        out = 0.3 * x + 0.4 * text[:, None, None, None] * self.pattern + 0.1 * time
        out = self.scale * out
        self.calls.append((x.detach(), t.detach(), cond.detach(), out.detach()))
        return out


@contextlib.contextmanager
def _expecting(case: Case) -> Iterator[Outputs]:
    """Run the ``with`` body; for a case that must raise, record what it raised (the
    ``raised`` output of ``run_function``) instead of letting it escape."""
    raised: Outputs = {"raised": None}
    if case.raises is None:
        yield raised
        return
    try:
        yield raised
    except case.raises as error:
        raised["raised"] = type(error).__name__


def _stub(case: Case, num_steps: int) -> _StubDenoiser:
    inputs = case.inputs
    return _StubDenoiser(inputs["pattern"].shape, inputs["pattern"], inputs["words"], num_steps)


# --- diffusion_loss (statistical) -----------------------------------------------------------


def _check_loss_inputs(x0: torch.Tensor, cond: torch.Tensor) -> None:
    if x0.ndim != 4:
        raise ValueError("expected x0 of shape (B, C, H, W)")
    if cond.shape[0] != x0.shape[0]:
        raise ValueError("expected cond with one row per image")


def _reference_loss(model, x0, cond, alphas_cumprod, p_uncond=0.1):
    """The simplified objective (Ho et al. 2020, eq. 14) with conditioning dropout."""
    from diffusers import DDPMScheduler

    _check_loss_inputs(x0, cond)
    batch = x0.shape[0]
    t = torch.randint(0, len(alphas_cumprod), (batch,), device=x0.device)
    noise = torch.randn_like(x0)
    scheduler = _scheduler(len(alphas_cumprod), alphas_cumprod)
    x_t = DDPMScheduler.add_noise(scheduler, x0, noise, t)
    drop = torch.rand(batch, device=x0.device) < p_uncond
    cond = torch.where(drop.view(-1, *[1] * (cond.ndim - 1)), torch.zeros_like(cond), cond)
    return torch.nn.functional.mse_loss(model(x_t, t, cond), noise)


def _run_loss(implementation, case: Case) -> Outputs:
    """Call diffusion_loss with a recording stub model, under a fixed global seed."""
    inputs = clone_inputs(case)
    model = _stub(case, len(inputs["alphas_cumprod"]))
    device = inputs["x0"].device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(inputs["seed"])
        with _expecting(case) as raised:
            loss = implementation(model, inputs["x0"], inputs["cond"],
                                  inputs["alphas_cumprod"], p_uncond=inputs["p_uncond"])
    if case.raises is not None:
        return raised
    outputs: Outputs = {"output": loss, "calls": len(model.calls), "grad[scale]": None}
    if model.calls:
        x_t, t, cond, prediction = model.calls[-1]
        outputs.update({"x_t": x_t, "t": t, "cond": cond, "prediction": prediction})
    if type(loss) is torch.Tensor and loss.requires_grad and loss.numel() == 1:
        loss.sum().backward()
        outputs["grad[scale]"] = model.scale.grad
    return outputs


def _loss_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def case(name, batch, shape, num_steps, p_uncond, dtype=torch.float32, **kwargs):
        x0 = torch.rand((batch, *shape), generator=generator, dtype=dtype) * 2 - 1
        cond = torch.randint(1, 30, (batch, 5), generator=generator)
        cond[:, 3:] = 0  # padded captions: the null caption is all zeros
        inputs = {"x0": x0, "cond": cond,
                  "alphas_cumprod": _alphas_cumprod(_schedule(num_steps, dtype)),
                  "p_uncond": p_uncond,
                  "pattern": torch.randn(shape, generator=generator, dtype=dtype),
                  "words": torch.randn(5, generator=generator, dtype=dtype) / 20,
                  "seed": int(torch.randint(0, 2**31, (1,), generator=generator))}
        return Case(name, inputs, **kwargs)

    cases = [
        case("3 images (3, 5, 4), p_uncond = 0.5", 3, (3, 5, 4), 10, 0.5),
        case("4000 tiny images, T = 10, p_uncond = 0.3 (statistics of t, noise, dropout)",
             4000, (2, 2, 2), 10, 0.3),
        case("2000 images, p_uncond = 0 (nothing dropped)", 2000, (1, 2, 2), 10, 0.0),
        case("x0 of shape (B, H, W), which it must refuse", 2, (4, 4), 10, 0.1,
             raises=ValueError),
    ]
    if hidden:
        cases += [
            case("batch 1, float64", 1, (3, 3, 2), 50, 0.1, dtype=torch.float64),
            case("4000 tiny images, T = 25, p_uncond = 0.1", 4000, (1, 2, 2), 25, 0.1),
            case("500 images, p_uncond = 1 (everything dropped)", 500, (1, 1, 1), 5, 1.0),
        ]
    return cases


class _StatisticalCheck(_Check):
    """A check whose reference draws other random numbers than the student's code: the
    trusted side tests the student's recordings instead of comparing with the reference."""

    def compare(self, case: Case, actual: Outputs, expected: Outputs) -> None:
        if case.raises is not None:
            super().compare(case, actual, expected)
            return
        problem, hint = _loss_problem(case, actual)
        if problem:
            raise CheckFailure(self.exercise, problem, case.name, hint)


def _loss_problem(case: Case, actual: Outputs) -> tuple[str | None, str | None]:
    """What is wrong with diffusion_loss's recordings on ``case`` (None when nothing), and a
    hint naming the mistake when it is a known one."""
    inputs = case.inputs
    x0 = inputs["x0"].to(torch.float64)
    abar = inputs["alphas_cumprod"].to(torch.float64)
    num_steps, batch, p = len(abar), x0.shape[0], inputs["p_uncond"]
    loss = actual.get("output")
    if type(loss) is not torch.Tensor or loss.ndim != 0:
        what = (f"a tensor of shape {tuple(loss.shape)}" if torch.is_tensor(loss)
                else type(loss).__name__)
        return (f"it returned {what}; expected the loss as a scalar tensor (shape ())",
                "average the squared error over every element: F.mse_loss(prediction, noise).")
    if loss.dtype != inputs["x0"].dtype or loss.device != inputs["x0"].device:
        return (f"the loss has dtype {loss.dtype} on {loss.device}; expected "
                f"{inputs['x0'].dtype} on {inputs['x0'].device} (those of x0)", None)
    if actual["calls"] != 1:
        return (f"it called the model {actual['calls']} times; expected one call "
                "model(x_t, t, cond) on the whole batch", None)
    t, x_t, cond, prediction = (actual[k] for k in ("t", "x_t", "cond", "prediction"))
    if t.dtype not in (torch.int64, torch.int32) or t.shape != (batch,):
        return (f"the model received t of shape {tuple(t.shape)}, dtype {t.dtype}; expected "
                f"({batch},) integer timesteps, one per image", None)
    if int(t.min()) < 0 or int(t.max()) >= num_steps:
        return (f"the model received timesteps from {int(t.min())} to {int(t.max())}; "
                f"expected 0 to T - 1 = {num_steps - 1}", None)
    t = t.cpu()
    if batch >= 100 * num_steps:
        counts = torch.bincount(t, minlength=num_steps).double()
        mean = batch / num_steps
        if (counts < 0.6 * mean).any() or (counts > 1.4 * mean).any():
            missing = [i for i in range(num_steps) if counts[i] < 0.6 * mean]
            return (f"the timesteps are not uniform over 0..{num_steps - 1}: counts "
                    f"{counts.long().tolist()}",
                    "draw t = torch.randint(0, T, (B,)): the upper bound is exclusive"
                    if missing == [num_steps - 1] else None)
    # the noise, recovered from x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (eq. 4)
    a = abar[t].view(-1, 1, 1, 1)
    x_t64 = x_t.to(torch.float64).cpu()
    x0 = x0.cpu()
    noise = (x_t64 - a.sqrt() * x0) / (1 - a).sqrt()
    # what a loss against each target would be
    prediction = prediction.to(torch.float64).cpu()
    targets = {
        "noise": noise,
        "x0": x0,
        "x_t": x_t64,
        "noise, missing square roots": (x_t64 - a * x0) / (1 - a),
    }
    rtol = 1e-3 if x0.shape[0] > 10 else 1e-4
    value = float(loss.detach())
    matches = [k for k, target in targets.items()
               if math.isclose(value, float(((prediction - target) ** 2).mean()), rel_tol=rtol,
                               abs_tol=1e-7)]
    if "noise" not in matches:
        expected = float(((prediction - noise) ** 2).mean())
        hints = {
            "x0": "the target is the noise that was added (eps), not the clean image x0 "
                  "(Ho et al. 2020, eq. 14).",
            "x_t": "the target is the noise that was added (eps), not the noisy image x_t.",
            "noise, missing square roots": "missing square roots in the forward process: "
                  "x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps.",
        }
        hint = next((hints[k] for k in matches if k in hints), None)
        return (f"the loss is {value:.6g}; the mean squared error between the model's "
                f"prediction and the noise in x_t is {expected:.6g}", hint)
    if batch * x0[0].numel() >= 4000:
        mean, std = float(noise.mean()), float(noise.std())
        if abs(mean) > 0.05 or abs(std - 1) > 0.05:
            uniform = abs(mean - 0.5) < 0.05 and abs(std - 12 ** -0.5) < 0.05
            return (f"the noise in x_t has mean {mean:.3f} and standard deviation {std:.3f}; "
                    "expected a standard normal (mean 0, std 1)",
                    "torch.rand_like draws uniform noise in [0, 1); the forward process adds "
                    "Gaussian noise: torch.randn_like." if uniform else None)
    # conditioning dropout: each caption kept as it is, or replaced by the null caption
    given = inputs["cond"].cpu()
    cond = cond.cpu()
    if cond.shape != given.shape or cond.dtype != given.dtype:
        return (f"the model received cond of shape {tuple(cond.shape)}, dtype {cond.dtype}; "
                f"expected {tuple(given.shape)}, {given.dtype} (the captions, some dropped)",
                None)
    kept = (cond == given).flatten(1).all(1)
    dropped = (cond == 0).flatten(1).all(1)
    if not (kept | dropped).all():
        return ("some captions the model received are neither the given caption nor the null "
                "caption",
                "a dropped caption is replaced by zeros (the null caption, <pad> only): "
                "torch.where(drop[:, None], torch.zeros_like(cond), cond).")
    fraction = float(dropped.double().mean())
    allowed = 5 * math.sqrt(p * (1 - p) / batch) + 1e-9
    if abs(fraction - p) > allowed:
        if abs(fraction - (1 - p)) <= allowed:
            hint = ("that drops with probability 1 - p_uncond: drop a caption when "
                    "torch.rand(B) < p_uncond.")
        elif fraction == 0.0:  # no dropout at all, or one coin for the batch that came up
            hint = ("no caption was dropped: classifier-free guidance needs the null caption "
                    "in about p_uncond of the rows. Draw one random number per row, drop = "
                    "torch.rand(B) < p_uncond, and put the null caption in those rows.")
        elif fraction == 1.0:  # always dropped, or one coin for the batch
            hint = ("every caption was dropped: draw one random number per row "
                    "(torch.rand(B) < p_uncond), not one for the whole batch.")
        else:
            hint = None
        return (f"{100 * fraction:.1f} % of the captions were dropped; expected about "
                f"{100 * p:.0f} % (p_uncond = {p})", hint)
    # the gradient reaches the model
    grad = actual.get("grad[scale]")
    if grad is None:
        return ("no gradient reached the model's parameters: the loss is cut off from "
                "autograd (.detach(), .item(), torch.no_grad())", None)
    scale = 1.0
    expected_grad = float((2 * (prediction - noise) * prediction / scale).mean())
    if not math.isclose(float(grad), expected_grad, rel_tol=rtol, abs_tol=1e-6):
        return (f"the gradient of the loss w.r.t. the model's output scale is {float(grad):.6g}, "
                f"expected {expected_grad:.6g} (the mean of the squared error over every "
                "element)", None)
    return None, None


diffusion_loss = _StatisticalCheck(
    exercise="diffusion_loss",
    reference=_reference_loss,
    cases=_loss_cases,
    run=_run_loss,
    forbidden=_forbid("Use torch.randint, torch.randn_like, torch.rand and your q_sample."),
)


# --- p_sample_step ----------------------------------------------------------------------------


def _check_step_inputs(model_output, t, x_t, betas) -> None:
    if model_output.shape != x_t.shape:
        raise ValueError("model_output must have the shape of x_t")
    if not 0 <= int(t) < len(betas):
        raise ValueError("t must be in 0 .. T-1")


def _reference_step(model_output, t, x_t, betas, alphas_cumprod, noise):
    _check_step_inputs(model_output, t, x_t, betas)
    scheduler = _scheduler(len(betas), alphas_cumprod)
    with _given_noise(noise):
        return scheduler.step(model_output, int(t), x_t).prev_sample


def _step_mistake(model_output, t, x_t, betas, abar, noise, *, sign=1.0, std_power=0.5,
                  variance="small", wrap=False, clip=CLIP_SAMPLE):
    """One reverse step (x_0 prediction, then the posterior, Ho et al. eqs. 15 and 7), with
    switches that make the common mistakes."""
    abar_t = abar[t]
    abar_prev = abar[t - 1] if (t > 0 or wrap) else torch.ones_like(abar_t)
    beta_t = betas[t]
    x0 = (x_t - sign * (1 - abar_t).sqrt() * model_output) / abar_t.sqrt()
    if clip:
        x0 = x0.clamp(-1, 1)
    mean = (abar_prev.sqrt() * beta_t / (1 - abar_t)) * x0 \
        + ((1 - beta_t).sqrt() * (1 - abar_prev) / (1 - abar_t)) * x_t
    if t == 0 and not wrap:
        return mean
    var = beta_t if variance == "large" else (1 - abar_prev) / (1 - abar_t) * beta_t
    return mean + var.clamp_min(1e-20) ** std_power * noise


def _step_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def case(name, shape, num_steps, t, dtype=torch.float32, kind="linear", **kwargs):
        betas = _schedule(num_steps, dtype, kind)
        inputs = {
            "model_output": torch.randn(shape, generator=generator, dtype=dtype),
            "t": t,
            "x_t": torch.randn(shape, generator=generator, dtype=dtype),
            "betas": betas,
            "alphas_cumprod": _alphas_cumprod(betas),
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


p_sample_step = _Check(
    exercise="p_sample_step",
    reference=_reference_step,
    cases=_step_cases,
    mistakes=[
        Mistake("wrong sign in the reverse step: the predicted noise is *subtracted*, "
                "x_0 = (x_t - sqrt(1 - alpha-bar_t) eps) / sqrt(alpha-bar_t).",
                functools.partial(_step_mistake, sign=-1.0)),
        Mistake("no noise is added at t = 0: the last step returns the posterior mean "
                "(and alphas_cumprod[t - 1] at t = 0 is alphas_cumprod[-1], the *last* "
                "value: use alpha-bar_{-1} = 1).",
                functools.partial(_step_mistake, wrap=True)),
        Mistake("beta-tilde_t is the variance; the noise is scaled by its square root, the "
                "standard deviation sigma_t = sqrt(beta-tilde_t).",
                functools.partial(_step_mistake, std_power=1.0)),
        Mistake("that is the 'fixed_large' variance sigma_t^2 = beta_t; this step uses the "
                "posterior variance beta-tilde_t = (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) "
                "beta_t ('fixed_small', Ho et al. eq. 7).",
                functools.partial(_step_mistake, variance="large")),
        Mistake("clip the predicted x_0 to [-1, 1] before the posterior mean (Ho et al.'s "
                "code, diffusers' clip_sample=True).",
                functools.partial(_step_mistake, clip=False)),
    ],
    forbidden=_forbid("Write the two formulas (x_0 prediction, posterior mean) yourself."),
)


# --- sample -----------------------------------------------------------------------------------


def _reference_sample(model, cond, betas, guidance_scale, generator=None):
    """The DDPM chain (Ho et al. 2020, Algorithm 2) with classifier-free guidance (Ho &
    Salimans 2022), stepped by diffusers' DDPMScheduler."""
    from diffusers.utils.torch_utils import randn_tensor

    if betas.ndim != 1:
        raise ValueError("betas must be a (T,) tensor")
    device, dtype = cond.device, betas.dtype
    betas = betas.to(device)
    scheduler = _scheduler(len(betas), _alphas_cumprod(betas))
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
    inputs = clone_inputs(case)
    cond, betas = inputs["cond"], inputs["betas"]
    model = _stub(case, len(betas))
    generator = None
    if inputs["seed"] is not None:
        generator = torch.Generator(device=cond.device).manual_seed(inputs["seed"])
    with torch.random.fork_rng(devices=[cond.device] if cond.device.type == "cuda" else []):
        torch.manual_seed(inputs["global_seed"])
        with _expecting(case) as raised:
            result = implementation(model, cond, betas, inputs["guidance_scale"],
                                    generator=generator)
    return raised if case.raises is not None else collect(result)


def _sample_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def case(name, batch, shape, num_steps, guidance_scale, dtype=torch.float32,
             kind="linear", seed=True, **kwargs):
        cond = torch.randint(1, 30, (batch, 4), generator=generator)
        cond[:, 2:] = 0
        inputs = {
            "cond": cond,
            "betas": _schedule(num_steps, dtype, kind),
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
        abar = _alphas_cumprod(betas)
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
            x = _step_mistake(eps, t, x, betas, abar, noise)
        return x

    return implementation


sample = _Check(
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
    forbidden=_forbid("Use your p_sample_step."),
)


# --- the judge: which Shapes-world object best explains an image ----------------------------

JUDGE_IMAGE_SIZE = 16
_STEP = 0.25  # template positions, in pixels
_MARGIN = 1.5  # centres from _MARGIN to size - _MARGIN pixels
_RADII = (2.3, 2.55, 2.8, 3.05, 3.3, 3.55)  # bounding-circle radii in pixels (large: 2.7-3.0)
_WINDOW = 1.0  # positions searched around the colour-weighted centroid, in pixels


@functools.lru_cache(maxsize=1)
def _templates() -> torch.Tensor:
    """Coverage maps (3 shapes, radii, y, x, H*W) of every shape at every template place,
    drawn by the Shapes world's own renderer (cached per process: ~3 s)."""
    from course_utils.data.render import coverage
    from course_utils.data.world import SHAPES

    size = JUDGE_IMAGE_SIZE
    positions = np.arange(_MARGIN, size - _MARGIN + 1e-9, _STEP)
    maps = np.zeros((len(SHAPES), len(_RADII), len(positions), len(positions), size * size))
    for s, shape in enumerate(SHAPES):
        for r, radius in enumerate(_RADII):
            for i, y in enumerate(positions):
                for j, x in enumerate(positions):
                    maps[s, r, i, j] = coverage(shape, x / size, y / size, radius / size,
                                                size).ravel()
    return torch.tensor(maps, dtype=torch.float32)


def judge_images(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Shapes-world class of each one-object image, by template matching.

    For every image, every template (a shape at a radius and a sub-pixel position near the
    image's colour-weighted centroid) is painted in each of the 5 colours on the world's
    background, and the template and colour with the smallest squared error win.

    Args:
        images: (N, 3, 16, 16) float images in [0, 1].

    Returns:
        classes (N,) long (colour_index * 3 + shape_index, as ``data.CLASSES``) and the
        fraction (N,) of the image's deviation from the background that the best object
        leaves unexplained (about 0.04 on real images).
    """
    from course_utils.data.world import BACKGROUND_RGB, COLOUR_RGB, COLOURS

    size = JUDGE_IMAGE_SIZE
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
        raise ValueError(f"expected images of shape (N, 3, {size}, {size}), got "
                         f"{tuple(images.shape)}")
    images = images.detach().to("cpu", torch.float32)
    if not torch.isfinite(images).all() or images.min() < -0.01 or images.max() > 1.01:
        raise ValueError("expected images with values in [0, 1] (map the model's [-1, 1] "
                         "with (x + 1) / 2 and clamp)")
    templates = _templates()  # (3, R, P, P, H*W)
    count, positions = len(images), templates.shape[2]
    background = torch.tensor(BACKGROUND_RGB, dtype=torch.float32)
    colours = torch.tensor([COLOUR_RGB[c] for c in COLOURS]) - background  # (5, 3)
    x = images.permute(0, 2, 3, 1).reshape(count, size * size, 3) - background  # (N, H*W, 3)
    energy = (x * x).sum(dim=(1, 2))  # (N,)
    projection = torch.einsum("npk,ck->ncp", x, colours)  # (N, 5, H*W)
    # where to look: the centroid of the pixels that differ from the background
    weight = (x.norm(dim=2) / colours.norm(dim=1).mean()).clamp(0, 1)  # (N, H*W)
    weight = torch.where(weight > 0.25, weight, torch.zeros_like(weight))
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    total = weight.sum(dim=1).clamp_min(1e-6)
    grid = weight.view(count, size, size)
    cx = (grid.sum(dim=1) * centres).sum(dim=1) / total  # (N,)
    cy = (grid.sum(dim=2) * centres).sum(dim=1) / total
    k = round(_WINDOW / _STEP)
    classes, unexplained = [], []
    squared = (colours * colours).sum(dim=1)  # (5,)
    for n in range(count):
        j = int(np.clip(round((float(cx[n]) - _MARGIN) / _STEP), k, positions - 1 - k))
        i = int(np.clip(round((float(cy[n]) - _MARGIN) / _STEP), k, positions - 1 - k))
        near = templates[:, :, i - k:i + k + 1, j - k:j + k + 1]  # (3, R, w, w, H*W)
        flat = near.reshape(-1, size * size)  # (M, H*W)
        # |x - m c|^2 = |x|^2 - 2 m.(x.c) + |m|^2 |c|^2, for every template m and colour c
        error = energy[n] - 2 * projection[n] @ flat.T \
            + squared[:, None] * (flat * flat).sum(dim=1)[None, :]  # (5, M)
        best = int(error.argmin())
        colour, template = divmod(best, flat.shape[0])
        shape = template // (flat.shape[0] // templates.shape[0])
        classes.append(colour * 3 + shape)
        unexplained.append(float(error.flatten()[best] / energy[n].clamp_min(1e-9)))
    return torch.tensor(classes), torch.tensor(unexplained)


# --- the trained text-to-image model --------------------------------------------------------

#: A sample counts when the judge names the prompt's class and the object explains all but
#: this fraction of the image's deviation from the background (real images: about 0.04).
MAX_UNEXPLAINED = 0.5


def _prompt_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    from course_utils.data import CLASSES, PROMPT_TEMPLATES

    per_class = 6
    prompts, labels = [], []
    for label, name in enumerate(CLASSES):
        for _ in range(per_class):
            template = PROMPT_TEMPLATES[int(torch.randint(len(PROMPT_TEMPLATES), (1,),
                                                          generator=generator))]
            prompts.append(template.format(name) if hidden else f"a {name}")
            labels.append(label)
    seed = int(torch.randint(0, 2**31, (1,), generator=generator))
    return [Case(f"{len(prompts)} prompts, {per_class} for each of the 15 classes",
                 {"prompts": tuple(prompts), "seed": seed},
                 private={"labels": torch.tensor(labels)})]


def _run_generate(generate, case: Case) -> Outputs:
    return {"output": generate(list(case.inputs["prompts"]), case.inputs["seed"])}


def _score(case: Case, outputs: Outputs) -> dict[str, float]:
    images = outputs["output"]
    labels = case.private["labels"]
    if type(images) is not torch.Tensor or len(images) != len(labels):
        raise ValueError(f"expected a tensor of {len(labels)} images (one per prompt), got "
                         f"{images!r:.80}")
    classes, unexplained = judge_images(images)
    right = (classes == labels) & (unexplained <= MAX_UNEXPLAINED)
    return {
        "samples judged the prompt's class": float(right.double().mean()),
        "samples of the prompt's colour": float((classes // 3 == labels // 3).double().mean()),
        "samples of the prompt's shape": float((classes % 3 == labels % 3).double().mean()),
    }


text_to_image = QualityCheck(
    exercise="text-to-image samples",
    cases=_prompt_cases,
    run=_run_generate,
    score=_score,
    thresholds={"samples judged the prompt's class": 0.80},
    hint="train the denoiser as the notebook does (all its steps, conditioning dropout on), "
         "sample with a guidance scale above 1, and return images in [0, 1]. A judge that "
         "renders every Shapes-world object names each sample's class.",
    forbidden=Forbidden(code=["course_utils.data.render"],
                        allowed="Generate them with your diffusion model and sample()."),
)

__all__ = ["CLIP_SAMPLE", "MAX_UNEXPLAINED", "cosine_beta_schedule",
           "diffusion_loss", "judge_images", "linear_beta_schedule", "p_sample_step",
           "q_sample", "sample", "text_to_image", "timestep_embedding"]
