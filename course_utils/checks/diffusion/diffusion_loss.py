"""Check of ``diffusion_loss``: the simplified objective (Ho et al. 2020, eq. 14) with
conditioning dropout. It draws its own timesteps, noise and dropout, so a stub model records
what it receives and trusted properties (``_PROPERTIES``, tried in order) judge the recordings.
"""

from __future__ import annotations

import math

import torch

from course_utils.checks.case import Case, Outputs
from course_utils.checks.diffusion._ddpm import alpha_bar, case_schedule, ddpm_scheduler, forbid
from course_utils.checks.diffusion._stub import stub_for
from course_utils.checks.runners import clone_inputs, expect_raise
from course_utils.checks.stochastic import StochasticCheck, Verdict, frequency_problem

#: What the stub model recorded, with the loss: one value, so that the generic structure
#: comparison leaves it to the properties below (each with its own message and hint).
RECORDED = "recorded"


def _reference_loss(model, x0, cond, alphas_cumprod, p_uncond=0.1):
    """The simplified objective (Ho et al. 2020, eq. 14) with conditioning dropout."""
    from diffusers import DDPMScheduler

    if x0.ndim != 4:
        raise ValueError("expected x0 of shape (B, C, H, W)")
    if cond.shape[0] != x0.shape[0]:
        raise ValueError("expected cond with one row per image")
    batch = x0.shape[0]
    t = torch.randint(0, len(alphas_cumprod), (batch,), device=x0.device)
    noise = torch.randn_like(x0)
    scheduler = ddpm_scheduler(len(alphas_cumprod), alphas_cumprod)
    x_t = DDPMScheduler.add_noise(scheduler, x0, noise, t)
    drop = torch.rand(batch, device=x0.device) < p_uncond
    cond = torch.where(drop.view(-1, *[1] * (cond.ndim - 1)), torch.zeros_like(cond), cond)
    return torch.nn.functional.mse_loss(model(x_t, t, cond), noise)


def _run_loss(implementation, case: Case) -> Outputs:
    """Call diffusion_loss with a recording stub model, under a fixed global seed (the random
    state is restored afterwards); ``{"recorded": {...}}`` holds the loss, the number of model
    calls, the last call's x_t, t, cond and prediction, and the gradient of the loss w.r.t.
    the stub's output scale."""
    inputs = clone_inputs(case)
    model = stub_for(case, len(inputs["alphas_cumprod"]))
    device = inputs["x0"].device

    def call():
        return implementation(model, inputs["x0"], inputs["cond"], inputs["alphas_cumprod"],
                              p_uncond=inputs["p_uncond"])

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(inputs["seed"])
        if case.raises is not None:
            return expect_raise(call, case)
        loss = call()
    recorded = {"loss": loss, "calls": len(model.calls), "scale gradient": None}
    if model.calls:
        x_t, t, cond, prediction = model.calls[-1]
        recorded.update({"x_t": x_t, "t": t, "cond": cond, "prediction": prediction})
    if type(loss) is torch.Tensor and loss.requires_grad and loss.numel() == 1:
        loss.sum().backward()
        recorded["scale gradient"] = model.scale.grad
    return {RECORDED: recorded}


def _loss_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def case(name, batch, shape, num_steps, p_uncond, dtype=torch.float32, **kwargs):
        x0 = torch.rand((batch, *shape), generator=generator, dtype=dtype) * 2 - 1
        cond = torch.randint(1, 30, (batch, 5), generator=generator)
        cond[:, 3:] = 0  # padded captions: the null caption is all zeros
        inputs = {"x0": x0, "cond": cond,
                  "alphas_cumprod": alpha_bar(case_schedule(num_steps, dtype)),
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


# --- the properties, each (case, recorded) -> (problem, hint) or None ----------------------


def _a_scalar_tensor(case: Case, recorded: dict) -> Verdict:
    loss = recorded["loss"]
    if type(loss) is torch.Tensor and loss.ndim == 0:
        return None
    what = (f"a tensor of shape {tuple(loss.shape)}" if torch.is_tensor(loss)
            else type(loss).__name__)
    return (f"it returned {what}; expected the loss as a scalar tensor (shape ())",
            "average the squared error over every element: F.mse_loss(prediction, noise).")


def _dtype_and_device_of_x0(case: Case, recorded: dict) -> Verdict:
    loss, x0 = recorded["loss"], case.inputs["x0"]
    if loss.dtype == x0.dtype and loss.device == x0.device:
        return None
    return (f"the loss has dtype {loss.dtype} on {loss.device}; expected {x0.dtype} on "
            f"{x0.device} (those of x0)", None)


def _one_model_call(case: Case, recorded: dict) -> Verdict:
    if recorded["calls"] == 1:
        return None
    return (f"it called the model {recorded['calls']} times; expected one call "
            "model(x_t, t, cond) on the whole batch", None)


def _one_integer_timestep_per_image(case: Case, recorded: dict) -> Verdict:
    t, batch = recorded["t"], case.inputs["x0"].shape[0]
    if t.dtype in (torch.int64, torch.int32) and t.shape == (batch,):
        return None
    return (f"the model received t of shape {tuple(t.shape)}, dtype {t.dtype}; expected "
            f"({batch},) integer timesteps, one per image", None)


def _timesteps_in_range(case: Case, recorded: dict) -> Verdict:
    t, num_steps = recorded["t"], len(case.inputs["alphas_cumprod"])
    if int(t.min()) >= 0 and int(t.max()) < num_steps:
        return None
    return (f"the model received timesteps from {int(t.min())} to {int(t.max())}; "
            f"expected 0 to T - 1 = {num_steps - 1}", None)


def _uniform_timesteps(case: Case, recorded: dict) -> Verdict:
    t, num_steps = recorded["t"].cpu(), len(case.inputs["alphas_cumprod"])
    if len(t) < 100 * num_steps:  # too few draws to tell
        return None
    counts = torch.bincount(t, minlength=num_steps).double()  # (T,)
    mean = len(t) / num_steps
    if not ((counts < 0.6 * mean).any() or (counts > 1.4 * mean).any()):
        return None
    missing = [i for i in range(num_steps) if counts[i] < 0.6 * mean]
    return (f"the timesteps are not uniform over 0..{num_steps - 1}: counts "
            f"{counts.long().tolist()}",
            "draw t = torch.randint(0, T, (B,)): the upper bound is exclusive"
            if missing == [num_steps - 1] else None)


def _targets(case: Case, recorded: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """What a loss could have been computed against, and the model's prediction (float64, on
    the CPU). The noise is recovered from x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise
    (Ho et al. 2020, eq. 4)."""
    x0 = case.inputs["x0"].to(torch.float64).cpu()  # (B, C, H, W)
    abar = case.inputs["alphas_cumprod"].to(torch.float64).cpu()  # (T,)
    a = abar[recorded["t"].cpu()].view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    x_t = recorded["x_t"].to(torch.float64).cpu()  # (B, C, H, W)
    targets = {
        "noise": (x_t - a.sqrt() * x0) / (1 - a).sqrt(),
        "x0": x0,
        "x_t": x_t,
        "noise, missing square roots": (x_t - a * x0) / (1 - a),
    }
    return targets, recorded["prediction"].to(torch.float64).cpu()


def _rtol(case: Case) -> float:  # float32 sums over thousands of elements: looser
    return 1e-3 if case.inputs["x0"].shape[0] > 10 else 1e-4


_TARGET_HINTS = {
    "x0": "the target is the noise that was added (eps), not the clean image x0 "
          "(Ho et al. 2020, eq. 14).",
    "x_t": "the target is the noise that was added (eps), not the noisy image x_t.",
    "noise, missing square roots": "missing square roots in the forward process: "
                                   "x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps.",
}


def _the_mse_against_the_noise(case: Case, recorded: dict) -> Verdict:
    targets, prediction = _targets(case, recorded)
    value = float(recorded["loss"].detach())
    matches = [name for name, target in targets.items()
               if math.isclose(value, float(((prediction - target) ** 2).mean()),
                               rel_tol=_rtol(case), abs_tol=1e-7)]
    if "noise" in matches:
        return None
    expected = float(((prediction - targets["noise"]) ** 2).mean())
    hint = next((_TARGET_HINTS[name] for name in matches if name in _TARGET_HINTS), None)
    return (f"the loss is {value:.6g}; the mean squared error between the model's "
            f"prediction and the noise in x_t is {expected:.6g}", hint)


def _standard_normal_noise(case: Case, recorded: dict) -> Verdict:
    if case.inputs["x0"].numel() < 4000:  # too few draws to tell
        return None
    noise = _targets(case, recorded)[0]["noise"]
    mean, std = float(noise.mean()), float(noise.std())
    if abs(mean) <= 0.05 and abs(std - 1) <= 0.05:
        return None
    uniform = abs(mean - 0.5) < 0.05 and abs(std - 12 ** -0.5) < 0.05
    return (f"the noise in x_t has mean {mean:.3f} and standard deviation {std:.3f}; "
            "expected a standard normal (mean 0, std 1)",
            "torch.rand_like draws uniform noise in [0, 1); the forward process adds "
            "Gaussian noise: torch.randn_like." if uniform else None)


def _captions_kept_or_null(case: Case, recorded: dict) -> Verdict:
    """Conditioning dropout: each caption kept as it is, or replaced by the null caption."""
    given, cond = case.inputs["cond"].cpu(), recorded["cond"].cpu()
    if cond.shape != given.shape or cond.dtype != given.dtype:
        return (f"the model received cond of shape {tuple(cond.shape)}, dtype {cond.dtype}; "
                f"expected {tuple(given.shape)}, {given.dtype} (the captions, some dropped)",
                None)
    kept = (cond == given).flatten(1).all(1)  # (B,)
    dropped = (cond == 0).flatten(1).all(1)  # (B,)
    if (kept | dropped).all():
        return None
    return ("some captions the model received are neither the given caption nor the null "
            "caption",
            "a dropped caption is replaced by zeros (the null caption, <pad> only): "
            "torch.where(drop[:, None], torch.zeros_like(cond), cond).")


def _about_p_uncond_dropped(case: Case, recorded: dict) -> Verdict:
    p = case.inputs["p_uncond"]
    dropped = (recorded["cond"].cpu() == 0).flatten(1).all(1)  # (B,)
    verdict = frequency_problem(
        "a caption was dropped", int(dropped.sum()), len(dropped), p,
        inverted_hint="that drops with probability 1 - p_uncond: drop a caption when "
                      "torch.rand(B) < p_uncond.",
        tail=f" with p_uncond = {p}")
    if verdict is None or verdict[1] is not None:
        return verdict
    fraction = float(dropped.double().mean())
    if fraction == 0.0:  # no dropout at all, or one coin for the batch that came up
        return verdict[0], ("no caption was dropped: classifier-free guidance needs the null "
                            "caption in about p_uncond of the rows. Draw one random number "
                            "per row, drop = torch.rand(B) < p_uncond, and put the null "
                            "caption in those rows.")
    if fraction == 1.0:  # always dropped, or one coin for the batch
        return verdict[0], ("every caption was dropped: draw one random number per row "
                            "(torch.rand(B) < p_uncond), not one for the whole batch.")
    return verdict


def _the_gradient_of_the_mean(case: Case, recorded: dict) -> Verdict:
    if recorded["scale gradient"] is None:
        return ("no gradient reached the model's parameters: the loss is cut off from "
                "autograd (.detach(), .item(), torch.no_grad())", None)
    targets, prediction = _targets(case, recorded)
    grad = float(recorded["scale gradient"])
    # d/ds mean((s out - noise)^2) at s = 1, where the prediction s out is out itself
    expected = float((2 * (prediction - targets["noise"]) * prediction).mean())
    if math.isclose(grad, expected, rel_tol=_rtol(case), abs_tol=1e-6):
        return None
    return (f"the gradient of the loss w.r.t. the model's output scale is {grad:.6g}, "
            f"expected {expected:.6g} (the mean of the squared error over every element)",
            None)


#: Tried in order: each may assume that the ones before it passed.
_PROPERTIES = [
    _a_scalar_tensor, _dtype_and_device_of_x0, _one_model_call,
    _one_integer_timestep_per_image, _timesteps_in_range, _uniform_timesteps,
    _the_mse_against_the_noise, _standard_normal_noise, _captions_kept_or_null,
    _about_p_uncond_dropped, _the_gradient_of_the_mean,
]


def _judge(case: Case, actual: Outputs, expected: Outputs) -> Verdict:
    """The first property the student's recordings break (trusted; ``expected`` holds the
    reference's recordings of other random draws and is not used)."""
    recorded = actual[RECORDED]
    for prop in _PROPERTIES:
        verdict = prop(case, recorded)
        if verdict is not None:
            return verdict
    return None


diffusion_loss = StochasticCheck(
    exercise="diffusion_loss",
    reference=_reference_loss,
    cases=_loss_cases,
    run=_run_loss,
    judge=_judge,
    forbidden=forbid("Use torch.randint, torch.randn_like, torch.rand and your q_sample."),
)
