"""The checks of notebook 06_diffusion: they accept the solution and reject what is wrong."""

from __future__ import annotations

import functools
import math
import time

import pytest
import torch
import torch.nn.functional as F

from course_utils import data
from course_utils.blocks.unet import UNet
from course_utils.checks import CheckFailure
from course_utils.checks import diffusion as checks
from course_utils.checks.diffusion._stub import StubDenoiser
from course_utils.checks.diffusion.sample import _reference_sample, _run_sample
from tests.notebook_code import load_solution


@pytest.fixture(scope="module")
def solution():
    return load_solution("06_diffusion")


EXERCISES = ["linear_beta_schedule", "cosine_beta_schedule", "q_sample", "timestep_embedding",
             "diffusion_loss", "p_sample_step", "sample"]


@pytest.mark.parametrize("name", EXERCISES)
def test_the_solution_passes_visible_and_hidden_cases(solution, name, capfd):
    check = getattr(checks, name)
    check(solution[name])
    check(solution[name], seed=2026, hidden=True)
    captured = capfd.readouterr()
    assert captured.err == ""
    assert f"✓ {name}" in captured.out


@pytest.mark.cuda
@pytest.mark.parametrize("name", EXERCISES)
def test_the_solution_passes_on_cuda(solution, name, capfd):
    getattr(checks, name)(solution[name], seed=7, hidden=True)
    assert "cpu and cuda" in capfd.readouterr().out


@pytest.mark.parametrize("name", ["linear_beta_schedule", "cosine_beta_schedule", "q_sample",
                                  "timestep_embedding", "p_sample_step", "sample"])
def test_every_case_has_finite_expected_values(name):
    """A case whose reference is NaN would pass anything (NaN equals NaN in the comparison)."""
    check = getattr(checks, name)
    for hidden in (False, True):
        for case in check.all_cases(seed=3, hidden=hidden):
            if case.raises is not None:
                continue
            for key, value in check.run_reference(case).items():
                if torch.is_tensor(value):
                    assert torch.isfinite(value).all(), f"{case.name}: {key} is not finite"


# --- every listed mistake is rejected, with its hint -------------------------------------


MISTAKES = [(name, i) for name in ["linear_beta_schedule", "cosine_beta_schedule", "q_sample",
                                   "timestep_embedding", "p_sample_step", "sample"]
            for i in range(len(getattr(checks, name).mistakes))]


@pytest.mark.parametrize("name, index", MISTAKES)
def test_each_mistake_is_rejected_with_its_hint(name, index):
    check = getattr(checks, name)
    mistake = check.mistakes[index]
    with pytest.raises(CheckFailure) as failure:
        check(mistake.implementation, seed=2026, hidden=True)
    assert mistake.hint in str(failure.value)


def test_the_issue_s_mistakes_are_all_listed():
    hints = {name: " ".join(m.hint for m in getattr(checks, name).mistakes)
             for name in ["q_sample", "timestep_embedding", "p_sample_step"]}
    assert "wrong sign in the reverse step" in hints["p_sample_step"]
    assert "no noise is added at t = 0" in hints["p_sample_step"]
    assert "square root" in hints["p_sample_step"]
    assert "missing square roots" in hints["q_sample"]
    assert "sin/cos order" in hints["timestep_embedding"]


# --- generic wrong answers ------------------------------------------------------------------


def _wrong(solution, name, how):
    right = solution[name]

    def wrong(*args, **kwargs):
        return how(right(*args, **kwargs))

    return wrong


@pytest.mark.parametrize("name", ["q_sample", "p_sample_step", "timestep_embedding"])
@pytest.mark.parametrize("how, reason", [
    (lambda out: out.double() if out.dtype == torch.float32 else out.float(), "dtype"),
    (lambda out: out.to("meta"), "is on meta"),
    (lambda out: out[:1], "has shape"),
    (lambda out: out.detach().numpy(), "should be a torch.Tensor"),
])
def test_generic_wrong_outputs_are_rejected(solution, name, how, reason):
    with pytest.raises(CheckFailure, match=reason):
        getattr(checks, name)(_wrong(solution, name, how))


@pytest.mark.parametrize("name", ["q_sample", "p_sample_step"])
def test_a_detached_output_is_rejected(solution, name):
    with pytest.raises(CheckFailure, match="no gradient reached"):
        getattr(checks, name)(_wrong(solution, name, lambda out: out.detach()))


def test_a_missing_value_error_is_rejected(solution):
    def no_checks(x0, t, noise, alphas_cumprod):
        abar = alphas_cumprod[t].reshape(-1, *[1] * (x0.ndim - 1))
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    with pytest.raises(CheckFailure, match="expected it to raise ValueError"):
        checks.q_sample(no_checks)


# --- diffusers is refused while the student's code runs, however it is imported ---------------

from diffusers import DDPMScheduler  # noqa: E402 (a student's top-of-cell import)
from diffusers.models.embeddings import get_timestep_embedding  # noqa: E402


def _embedding_by_alias(t, dim):
    if t.ndim != 1 or dim < 4:
        raise ValueError("bad input")
    return get_timestep_embedding(t, dim)


def _embedding_by_attribute(t, dim):
    import diffusers.models.embeddings

    if t.ndim != 1 or dim < 4:
        raise ValueError("bad input")
    return diffusers.models.embeddings.get_timestep_embedding(t, dim)


def _q_sample_by_scheduler(x0, t, noise, alphas_cumprod):
    if x0.ndim != 4 or t.ndim != 1 or t.shape[0] != x0.shape[0]:
        raise ValueError("bad input")
    scheduler = DDPMScheduler(num_train_timesteps=len(alphas_cumprod))
    scheduler.alphas_cumprod = alphas_cumprod
    return scheduler.add_noise(x0, noise, t)


def _linear_by_scheduler(num_steps, beta_start=1e-4, beta_end=0.02):
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError("bad input")
    return DDPMScheduler(num_steps, beta_start, beta_end).betas


def _step_by_scheduler(model_output, t, x_t, betas, alphas_cumprod, noise):
    if model_output.shape != x_t.shape or not 0 <= t < len(betas):
        raise ValueError("bad input")
    scheduler = DDPMScheduler(len(betas), trained_betas=betas.cpu().numpy())
    return scheduler.step(model_output, t, x_t).prev_sample


@pytest.mark.parametrize("name, implementation", [
    ("timestep_embedding", _embedding_by_alias),
    ("timestep_embedding", _embedding_by_attribute),
    ("q_sample", _q_sample_by_scheduler),
    ("linear_beta_schedule", _linear_by_scheduler),
    ("p_sample_step", _step_by_scheduler),
])
def test_diffusers_is_refused(name, implementation):
    with pytest.raises(CheckFailure, match="which this exercise builds from scratch"):
        getattr(checks, name)(implementation)


def test_diffusers_works_again_after_a_check():
    with pytest.raises(CheckFailure):
        checks.timestep_embedding(_embedding_by_alias)
    assert get_timestep_embedding(torch.arange(3), 8).shape == (3, 8)
    assert DDPMScheduler(10).betas.shape == (10,)


# --- diffusion_loss: its statistical check rejects wrong losses with a reason ---------------


def _loss(x0, cond, alphas_cumprod, model, *, target="noise", noise_fn=torch.randn_like,
          t_high=None, drop="right", p_uncond=0.1, sqrt=True, calls=1, reduce=True):
    """diffusion_loss written out, with switches for the mistakes."""
    if x0.ndim != 4 or cond.shape[0] != x0.shape[0]:
        raise ValueError("bad input")
    batch, steps = x0.shape[0], len(alphas_cumprod)
    t = torch.randint(0, t_high or steps, (batch,), device=x0.device)
    noise = noise_fn(x0)
    abar = alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = (abar.sqrt() * x0 + (1 - abar).sqrt() * noise if sqrt
           else abar * x0 + (1 - abar) * noise)
    p = 1 - p_uncond if drop == "inverted" else p_uncond
    dropped = torch.rand(batch, device=x0.device) < p
    if drop == "batch":
        dropped = torch.full_like(dropped, bool(torch.rand(()) < p))
    if drop == "none":
        dropped = torch.zeros_like(dropped)
    null = torch.full_like(cond, 3) if drop == "unk" else torch.zeros_like(cond)
    cond = torch.where(dropped[:, None], null, cond)
    prediction = model(x_t, t, cond)
    for _ in range(calls - 1):
        prediction = model(x_t, t, cond)
    goal = {"noise": noise, "x0": x0, "x_t": x_t}[target]
    loss = F.mse_loss(prediction, goal, reduction="mean" if reduce else "none")
    return loss


def _as_exercise(**switches):
    def diffusion_loss(model, x0, cond, alphas_cumprod, p_uncond=0.1):
        return _loss(x0, cond, alphas_cumprod, model, p_uncond=p_uncond, **switches)

    return diffusion_loss


def test_the_written_out_loss_passes():
    checks.diffusion_loss(_as_exercise())
    checks.diffusion_loss(_as_exercise(), seed=2026, hidden=True)


WRONG_LOSSES = {
    "target x0": (dict(target="x0"), "not the clean image x0"),
    "target x_t": (dict(target="x_t"), "not the noisy image x_t"),
    "uniform noise": (dict(noise_fn=torch.rand_like), "torch.rand_like draws uniform noise"),
    "missing square roots": (dict(sqrt=False), "missing square roots"),
    "t never T - 1": (dict(t_high=9), "the upper bound is exclusive"),
    "dropout inverted": (dict(drop="inverted"), "drops with probability 1 - p_uncond"),
    "the whole batch dropped": (dict(drop="batch"), "one random number per row"),
    "no dropout at all": (dict(drop="none"), "no caption was dropped"),
    "null caption of <unk>": (dict(drop="unk"), "replaced by zeros"),
    "the model called twice": (dict(calls=2), "expected one call"),
    "no mean": (dict(reduce=False), "expected the loss as a scalar tensor"),
}


@pytest.mark.parametrize("wrong", WRONG_LOSSES)
def test_wrong_losses_are_rejected_with_a_reason(wrong):
    switches, reason = WRONG_LOSSES[wrong]
    with pytest.raises(CheckFailure) as failure:
        checks.diffusion_loss(_as_exercise(**switches), seed=2026, hidden=True)
    assert reason in str(failure.value)
    if wrong == "no dropout at all":  # not told it dropped the whole batch at once
        assert "whole batch" not in str(failure.value)


@pytest.mark.parametrize("how, reason", [
    (lambda loss: loss.detach(), "no gradient reached the model"),
    (lambda loss: loss.item(), "expected the loss as a scalar tensor"),
    (lambda loss: loss.double(), "expected torch.float32"),
    (lambda loss: loss * 2, "the loss is"),
])
def test_generic_wrong_losses_are_rejected(how, reason):
    with pytest.raises(CheckFailure, match=reason):
        checks.diffusion_loss(lambda *args, **kwargs: how(_as_exercise()(*args, **kwargs)))


def test_the_loss_check_refuses_diffusers_add_noise():
    def with_add_noise(model, x0, cond, alphas_cumprod, p_uncond=0.1):
        if x0.ndim != 4:
            raise ValueError("bad input")
        scheduler = DDPMScheduler(len(alphas_cumprod))
        t = torch.randint(0, len(alphas_cumprod), (len(x0),))
        noise = torch.randn_like(x0)
        x_t = scheduler.add_noise(x0, noise, t)
        return F.mse_loss(model(x_t, t, cond), noise)

    with pytest.raises(CheckFailure, match="which this exercise builds from scratch"):
        checks.diffusion_loss(with_add_noise)


def test_the_loss_check_is_deterministic_and_leaves_the_random_state_alone(solution):
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    checks.diffusion_loss(solution["diffusion_loss"])
    assert torch.equal(torch.rand(3), before)


# --- sample: guidance, seeds ------------------------------------------------------------------


def test_guidance_really_changes_the_reference(solution):
    """Scale 1 and a larger scale differ; scale 0 is the unconditional model alone."""
    case = checks.sample.cases(torch.Generator().manual_seed(0), False)[0]
    run = functools.partial(_run_sample, _reference_sample)
    outputs = {}
    for scale in (0.0, 1.0, 3.0):
        case.inputs["guidance_scale"] = scale
        outputs[scale] = run(case)["output"]
    assert not torch.allclose(outputs[1.0], outputs[3.0], atol=1e-3)
    assert not torch.allclose(outputs[0.0], outputs[1.0], atol=1e-3)
    null_case = checks.sample.cases(torch.Generator().manual_seed(0), False)[0]
    null_case.inputs["cond"] = torch.zeros_like(null_case.inputs["cond"])
    null_case.inputs["guidance_scale"] = 1.0
    torch.testing.assert_close(run(null_case)["output"], outputs[0.0])
    # and the solution agrees on all three
    for scale in (0.0, 1.0, 3.0):
        case.inputs["guidance_scale"] = scale
        student = _run_sample(solution["sample"], case)["output"]
        torch.testing.assert_close(student, outputs[scale], rtol=1e-4, atol=1e-4)


def test_sample_is_reproducible_with_a_seed(solution):
    model = StubDenoiser((3, 4, 4), torch.randn(3, 4, 4), torch.randn(4) / 10, 10)
    cond = torch.randint(1, 9, (2, 4))
    betas = solution["cosine_beta_schedule"](10)
    runs = [solution["sample"](model, cond, betas, 2.0, torch.Generator().manual_seed(s))
            for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_sample_ignoring_the_guidance_scale_is_rejected(solution):
    def unguided(model, cond, betas, guidance_scale, generator=None):
        return solution["sample"](model, cond, betas, 1.0, generator)

    with pytest.raises(CheckFailure, match="guidance scale 3"):
        checks.sample(unguided)


def test_sample_using_diffusers_step_is_refused():
    def with_scheduler(model, cond, betas, guidance_scale, generator=None):
        if betas.ndim != 1:
            raise ValueError("bad input")
        scheduler = DDPMScheduler(len(betas), trained_betas=betas.numpy())
        x = torch.randn((len(cond), *model.image_shape), generator=generator)
        for t in scheduler.timesteps:
            steps = torch.full((len(cond),), int(t))
            e_c, e_u = model(x, steps, cond), model(x, steps, torch.zeros_like(cond))
            x = scheduler.step(e_u + guidance_scale * (e_c - e_u), t, x,
                               generator=generator).prev_sample
        return x

    with pytest.raises(CheckFailure, match="which this exercise builds from scratch"):
        checks.sample(with_scheduler)


def test_the_stub_model_insists_on_per_image_timesteps(solution):
    def scalar_t(model, cond, betas, guidance_scale, generator=None):
        x = torch.randn((len(cond), *model.image_shape), generator=generator)
        return model(x, 5, cond)

    with pytest.raises(CheckFailure, match=r"the model expects t as a \(B,\) tensor"):
        checks.sample(scalar_t)


# --- the judge and the trained-model check ---------------------------------------------------


@pytest.fixture(scope="module")
def real_images():
    test = data.ShapesClassification("test", size=600, seed=3, image_size=16, hold_out=False,
                                     sizes=("large",))
    return test.images, test.labels


def test_the_judge_names_real_pictures_correctly(real_images):
    images, labels = real_images
    classes, unexplained = checks.judge_images(images)
    assert (classes == labels).float().mean() >= 0.995
    assert unexplained.max() < 0.2 < checks.MAX_UNEXPLAINED


def test_the_judge_rejects_noise_and_blank_pictures():
    noise = torch.rand(30, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    _, unexplained = checks.judge_images(noise)
    assert (unexplained > checks.MAX_UNEXPLAINED).all()
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        checks.judge_images(noise * 2 - 1)
    with pytest.raises(ValueError, match="expected images of shape"):
        checks.judge_images(torch.rand(2, 3, 32, 32))


@pytest.fixture(scope="module")
def gallery():
    """Real pictures of every class, rendered before any check runs (a stand-in model)."""
    test = data.ShapesClassification("test", size=15 * 8, seed=9, image_size=16,
                                     hold_out=False, sizes=("large",))
    return {name: test.images[test.labels == k] for k, name in enumerate(data.CLASSES)}


def _class_of(prompt: str) -> str:
    words = prompt.split()
    colour = next(w for w in words if w in data.COLOURS)
    shape = next(w for w in words if w in data.SHAPES)
    return f"{colour} {shape}"


def _fake_generator(gallery, wrong_every: int = 0, transform=lambda x: x):
    def generate(prompts, seed):
        images = []
        for i, prompt in enumerate(prompts):
            name = _class_of(prompt)
            if wrong_every and i % wrong_every == 0:  # answer with the next class
                name = data.CLASSES[(data.CLASSES.index(name) + 1) % len(data.CLASSES)]
            images.append(gallery[name][(seed + i) % len(gallery[name])])
        return transform(torch.stack(images))

    return generate


def test_the_quality_check_passes_good_samples(gallery, capsys):
    checks.text_to_image(_fake_generator(gallery))
    checks.text_to_image(_fake_generator(gallery, wrong_every=7), seed=2026, hidden=True)
    out = capsys.readouterr().out
    assert "✓ samples judged the prompt's class: 100.0 %" in out
    assert "samples of the prompt's colour" in out


def test_the_hidden_quality_check_uses_other_wordings():
    (case,) = checks.text_to_image.cases(torch.Generator().manual_seed(2026), True)
    assert len(set(case.inputs["prompts"])) > 15
    assert all(_class_of(p) == data.CLASSES[int(k)]
               for p, k in zip(case.inputs["prompts"], case.private["labels"], strict=True))


@pytest.mark.parametrize("generate, reason", [
    (lambda gallery: _fake_generator(gallery, wrong_every=3), "needs at least 80.0 %"),
    (lambda gallery: _fake_generator(gallery, transform=lambda x: x * 2 - 1),
     "cannot be scored"),
    (lambda gallery: _fake_generator(gallery, transform=lambda x: x[:-1]), "cannot be scored"),
    (lambda gallery: _fake_generator(gallery, transform=lambda x: torch.rand_like(x)),
     "needs at least 80.0 %"),
    (lambda gallery: (lambda prompts, seed: 1 / 0), "your model raised ZeroDivisionError"),
])
def test_the_quality_check_fails_bad_samples(gallery, generate, reason):
    with pytest.raises(CheckFailure, match=reason):
        checks.text_to_image(generate(gallery))


def test_the_quality_check_refuses_the_world_s_renderer():
    def renderer(prompts, seed):
        scenes = []
        for prompt in prompts:
            colour, shape = _class_of(prompt).split()
            scenes.append(data.Scene((data.ShapeObject(shape, colour, "large", 0.5, 0.5,
                                                       0.18),)))
        return data.images_to_tensor(data.render_scenes(scenes, 16))

    with pytest.raises(CheckFailure, match="the model called course_utils.data.render"):
        checks.text_to_image(renderer)

    def sneaky(prompts, seed):
        try:
            renderer(prompts, seed)
        except Exception:
            pass
        return torch.rand(len(prompts), 3, 16, 16)

    with pytest.raises(CheckFailure, match="the model called course_utils.data.render"):
        checks.text_to_image(sneaky)


def test_the_solution_s_generate_contract_with_an_untrained_model(solution):
    """The notebook's denoiser and sample() produce what the quality check scores."""
    vocab = data.build_vocabulary()
    model = solution["TextConditionedDenoiser"](len(vocab), solution["timestep_embedding"])
    tokens = solution["tokenize"](["a red circle", "there is a blue square"], vocab)
    assert tokens.shape == (2, solution["CONTEXT_LENGTH"]) and tokens[0, 3:].eq(0).all()
    betas = solution["cosine_beta_schedule"](4)
    images = solution["sample"](model.eval(), tokens, betas, 3.0, torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 16, 16) and torch.isfinite(images).all()
    classes, _ = checks.judge_images(((images + 1) / 2).clamp(0, 1))
    assert classes.shape == (2,)


# --- the U-Net block --------------------------------------------------------------------------


def test_the_unet_keeps_the_image_shape_and_refuses_odd_sizes():
    unet = UNet(3, (8, 16), emb_dim=12, groups=4)
    x, emb = torch.randn(2, 3, 8, 12), torch.randn(2, 12)
    out = unet(x, emb)
    assert out.shape == x.shape
    out.sum().backward()
    assert all(p.grad is not None for p in unet.parameters())
    with pytest.raises(ValueError, match="divisible by 4"):
        unet(torch.randn(1, 3, 10, 10), torch.randn(1, 12))


def test_the_unet_is_conditioned_on_the_embedding():
    torch.manual_seed(0)
    unet = UNet(3, (8, 16), emb_dim=12, groups=4)
    x = torch.randn(1, 3, 8, 8)
    assert not torch.allclose(unet(x, torch.zeros(1, 12)), unet(x, torch.ones(1, 12)))


# --- the optional pretrained section, offline ------------------------------------------------


def test_the_pretrained_section_skips_quickly_offline(solution, monkeypatch, capsys):
    import socket

    import diffusers

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    def must_not_download(*args, **kwargs):
        raise AssertionError("tried to download while offline")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(diffusers.AutoPipelineForText2Image, "from_pretrained",
                        must_not_download)
    start = time.perf_counter()
    assert solution["pretrained_text_to_image"](["a red circle"], torch.device("cpu")) is None
    assert time.perf_counter() - start < 3
    out = capsys.readouterr().out.strip()
    assert out.startswith("Skipped:") and out.count(".") == 1 and "\n" not in out


def test_the_network_probe_gives_up_on_a_hanging_lookup(solution, monkeypatch):
    import socket

    def hang(*args, **kwargs):
        time.sleep(5)
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    assert solution["network_available"](timeout=0.3) is False
    assert time.perf_counter() - start < 1.5


def test_the_network_probe_sees_a_local_server(solution):
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert solution["network_available"]("127.0.0.1", port, timeout=2.0) is True


# --- a golden number ---------------------------------------------------------------------------


def test_golden_numbers_of_a_seeded_chain(solution):
    """diffusers' full-loop style: a seeded chain on a fixed stub model, its sum and mean
    (and the reference agrees)."""
    model = StubDenoiser((3, 4, 4), torch.linspace(-1, 1, 48).view(3, 4, 4),
                         torch.full((4,), 0.1), 20)
    cond = torch.tensor([[5, 7, 0, 0], [9, 0, 0, 0]])
    betas = solution["cosine_beta_schedule"](20)
    out = solution["sample"](model, cond, betas, 2.0, torch.Generator().manual_seed(0))
    assert math.isclose(float(out.sum()), -3.2044, abs_tol=1e-3)
    assert math.isclose(float(out.mean()), -0.033380, abs_tol=1e-5)
    expected = _reference_sample(model, cond, betas, 2.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
