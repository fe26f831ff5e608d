"""course_utils' small modules: device, plotting, training, blocks, doctor."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import course_utils
from course_utils import plotting, training
from course_utils.blocks import (
    Attention,
    PatchEmbedding,
    TextTransformer,
    VisionTransformer,
    sincos_position_embedding,
)


def test_get_device_prefers_cuda_then_mps_then_cpu():
    device = course_utils.get_device()
    if torch.cuda.is_available():
        assert device.type == "cuda"
    else:
        assert device.type in {"mps", "cpu"}


def test_seed_everything_makes_runs_repeat():
    course_utils.seed_everything(3)
    first = (torch.rand(3), np.random.rand(3))  # noqa: NPY002 (the global generator it seeds)
    course_utils.seed_everything(3)
    second = (torch.rand(3), np.random.rand(3))  # noqa: NPY002
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    with pytest.raises(ValueError):
        course_utils.seed_everything(-1)


# --- plotting ---------------------------------------------------------------------------------


@pytest.fixture(autouse=False)
def close_figures():
    yield
    plt.close("all")


def test_every_picture_draws(close_figures):
    images = torch.rand(6, 3, 16, 16)
    figures = [
        plotting.show_images(images, [f"image {i}" for i in range(6)], ncols=3),
        plotting.show_images(np.zeros((2, 8, 8, 3), dtype=np.uint8)),
        plotting.show_feature_maps(torch.rand(4, 8, 8)),
        plotting.show_patch_grid(images[0], 4),
        plotting.show_heatmap(torch.rand(3, 4), ["a", "b", "c"], list("wxyz"), title="sim"),
        plotting.show_attention(images[:2], torch.rand(2, 16)),
        plotting.plot_losses({"train": list(np.linspace(2, 0.1, 50))}, smooth=5),
        plotting.show_four_tasks(images[0], "a red circle", "how many objects are there", "one",
                                 images[1:4]),
    ]
    assert all(len(fig.axes) > 0 for fig in figures)


@pytest.mark.parametrize("call", [
    lambda: plotting.show_images(torch.rand(2, 3, 8, 8), ["only one title"]),
    lambda: plotting.show_feature_maps(torch.rand(8, 8)),
    lambda: plotting.show_patch_grid(torch.rand(3, 10, 10), 4),
    lambda: plotting.show_heatmap(torch.rand(2, 2, 2)),
    lambda: plotting.show_attention(torch.rand(1, 3, 16, 16), torch.rand(1, 15)),
    lambda: plotting.as_hwc(torch.rand(2, 2, 3, 4, 4)),
])
def test_pictures_refuse_bad_shapes_with_a_value_error(call, close_figures):
    with pytest.raises(ValueError):
        call()


# --- training ---------------------------------------------------------------------------------


def toy_problem():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 2, generator=generator)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, y


def cross_entropy(model, x, y):
    return torch.nn.functional.cross_entropy(model(x), y)


def fit_once(**options):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    losses = training.train(model, cross_entropy, toy_problem(), epochs=5, batch_size=32,
                            lr=0.1, **options)
    return model, losses


def test_train_learns_and_repeats_itself():
    model, losses = fit_once()
    _, again = fit_once()
    assert losses == again  # same seed, same batches, same numbers
    assert len(losses) == 5 * 256 // 32
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:8])
    x, y = toy_problem()
    logits = training.predict(model, x, batch_size=100)
    assert logits.shape == (256, 2)
    assert training.accuracy(logits, y) > 0.95
    assert not model.training


def test_train_and_accuracy_refuse_mismatched_inputs():
    x, y = toy_problem()
    with pytest.raises(ValueError, match="differ in length"):
        training.train(torch.nn.Linear(2, 2), cross_entropy, (x, y[:10]), epochs=1,
                       batch_size=8, lr=0.1)
    with pytest.raises(ValueError, match="expected logits"):
        training.accuracy(torch.zeros(3, 2), torch.zeros(4))


def test_train_calls_on_step_after_every_step_with_the_model():
    seen = []
    model, losses = fit_once(on_step=lambda step, m: seen.append((step, m)))
    assert [step for step, _ in seen] == list(range(len(losses)))
    assert all(m is model for _, m in seen)


class LoopOverBatch(torch.nn.Module):
    """Correct but slow: its middle layer runs one row at a time."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(2, 16)
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(16, 16), torch.nn.Linear(16, 16)])
        self.head = torch.nn.Linear(16, 2)

    def forward(self, x):
        h = self.embed(x)
        h = torch.stack([self.blocks[0](row) for row in h])  # (B, 16), row by row
        return self.head(self.blocks[1](h))


def test_step_timer_says_how_long_and_names_the_slow_part(monkeypatch):
    monkeypatch.setattr(training.speed, "machine_factor", lambda: 1.0)
    lines = []
    model = LoopOverBatch()
    x = torch.randn(64, 2)
    timer = training.StepTimer(1000, reference_step_s=1e-7, model=model, write=lines.append)
    for _ in range(training.WARMUP_STEPS + training.CONFIRM_STEPS + 5):
        model(x)
        timer.tick(probe=lambda: model(x))
    assert len(lines) == 1, "the verdict is written once"
    assert "the reference implementation's" in lines[0] and "1000 steps will take" in lines[0]
    assert "`blocks.0`" in lines[0], lines[0]
    assert model.training, "the probe leaves the model's mode as it was"

    lines.clear()
    timer = training.StepTimer(10**9, reference_step_s=1e6, model=model, write=lines.append)
    for _ in range(training.WARMUP_STEPS + training.CONFIRM_STEPS + 5):
        timer.tick()
    assert len(lines) == 1 and "steps, about" in lines[0], "a long run: its duration, once"

    lines.clear()
    timer = training.StepTimer(20, reference_step_s=1e6, model=model, write=lines.append)
    for _ in range(20):
        timer.tick()
    assert lines == [], "a fast, short run says nothing"


def test_a_busy_moment_is_not_called_slow_code(monkeypatch):
    monkeypatch.setattr(training.speed, "machine_factor", lambda: 1.0)
    lines = []
    timer = training.StepTimer(20, reference_step_s=0.01, write=lines.append)
    pauses = iter([0.0] * training.WARMUP_STEPS + [0.1, 0.1] + [0.0] * 20)  # two slow steps
    for _ in range(20):
        time.sleep(next(pauses))
        timer.tick()
    assert lines == []


def test_slowest_part_descends_into_the_container_that_holds_the_time():
    from course_utils import speed

    times = {"embed": 0.1, "blocks": 0.8, "blocks.0": 0.7, "blocks.1": 0.1, "head": 0.1}
    name, share = speed.slowest_part(times)
    assert name == "blocks.0" and share == pytest.approx(0.7)
    assert speed.slowest_part({}) is None


def test_warmup_cosine_rises_then_decays_to_zero():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = training.warmup_cosine(optimizer, total_steps=100, warmup_steps=10)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[-1] < 0.01 and all(a >= b for a, b in zip(rates[9:], rates[10:], strict=False))


# --- blocks -----------------------------------------------------------------------------------


def test_patch_embedding_is_a_linear_map_of_flattened_patches():
    torch.manual_seed(0)
    embed = PatchEmbedding(8, 4, 3, 5)
    images = torch.rand(2, 3, 8, 8)
    patches = images.unfold(2, 4, 4).unfold(3, 4, 4)  # (B, C, 2, 2, P, P)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(2, 4, 48)  # (B, N, C·P·P)
    linear = patches @ embed.proj.weight.reshape(5, 48).T + embed.proj.bias  # (B, N, D)
    out = embed(images)
    assert out.shape == (2, 5, 5)
    torch.testing.assert_close(out[:, 1:], linear + embed.pos_embedding[:, 1:])
    torch.testing.assert_close(out[:, 0], (embed.cls_token + embed.pos_embedding[:, :1])[:, 0]
                               .expand(2, -1))
    with pytest.raises(ValueError):
        PatchEmbedding(10, 4, 3, 5)


def test_sincos_position_embedding_codes_rows_then_columns():
    codes = sincos_position_embedding(4, 16)  # (16 patches, 16 features), row-major
    assert codes.shape == (16, 16)
    rows, cols = codes[:, :8], codes[:, 8:]
    patch = 2 * 4 + 3  # row 2, column 3
    assert torch.allclose(rows[patch, :4], torch.sin(2 * 10000.0 ** (-torch.arange(4) / 4)))
    assert torch.allclose(cols[patch, 4:], torch.cos(3 * 10000.0 ** (-torch.arange(4) / 4)))
    assert torch.equal(rows[4:8], rows[[4] * 4]) and torch.equal(cols[0::4], cols[[0] * 4])
    assert len({tuple(c.tolist()) for c in codes}) == 16  # every patch has its own code
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_position_embedding(4, 18)


def test_attention_weights_path_equals_the_fast_path_and_respects_padding():
    torch.manual_seed(0)
    attention = Attention(16, 4)
    x = torch.randn(2, 5, 16)
    keep = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    fast = attention(x, keep)
    slow, weights = attention(x, keep, return_weights=True)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 5))
    assert weights[0, :, :, 3:].abs().max() == 0  # padding is never attended
    changed = x.clone()
    changed[0, 3:] = 100.0
    torch.testing.assert_close(attention(changed, keep)[0, :3], fast[0, :3])


def test_text_transformer_reads_the_end_token_and_ignores_padding():
    torch.manual_seed(0)
    encoder = TextTransformer(vocab_size=20, context_length=8, dim=16, depth=1, num_heads=2)
    tokens = torch.tensor([[1, 5, 6, 2, 0, 0, 0, 0], [1, 7, 8, 9, 10, 11, 12, 2]])
    out = encoder(tokens)
    assert out.shape == (2, 16)
    shorter = encoder(tokens[:1, :4])  # the same text without its padding
    torch.testing.assert_close(out[:1], shorter)


def test_vision_transformer_logits_features_and_attention_maps():
    model = VisionTransformer(image_size=16, patch_size=4, dim=32, depth=2, num_heads=4,
                              num_classes=15)
    images = torch.rand(3, 3, 16, 16)
    assert model(images).shape == (3, 15)
    maps = model.attention_maps(images)
    assert len(maps) == 2 and maps[0].shape == (3, 4, 17, 17)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(3, 4, 17))
    assert VisionTransformer(image_size=16, patch_size=4, dim=32)(images).shape == (3, 32)


# --- the command line -------------------------------------------------------------------------


def run_doctor(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course_utils", "doctor"], capture_output=True,
                          text=True, env=env, timeout=300)


def test_doctor_passes_on_a_working_install():
    result = run_doctor(dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All good" in result.stdout
    assert "forward/backward on" in result.stdout and "Shapes world" in result.stdout
    assert "not on Google Colab" in result.stdout and "JupyterLab 4." in result.stdout
    assert "@jupyter/nbgrader 0.9" in result.stdout and "enabled" in result.stdout


def test_doctor_fails_readably_without_torch(tmp_path):
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text(textwrap.dedent("""
        raise ImportError("No module named 'torch' (hidden by the test)")
    """))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = run_doctor(env)
    assert result.returncode == 1
    assert "FAIL  torch: cannot import torch" in result.stdout
    assert 'pip install -e ".[dev]"' in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


# --- the doctor on Colab, without JupyterLab, without nbgrader's extension (probes faked) ------


def run_place_checks(monkeypatch, capsys, *, colab=False, lab="4.2.5",
                     installed=None, disabled=None) -> tuple[int, str]:
    """The doctor's Colab/JupyterLab/nbgrader checks alone, on faked probes."""
    from course_utils.tools import doctor

    monkeypatch.setattr(doctor, "on_colab", lambda: colab)
    monkeypatch.setattr(doctor, "jupyterlab_version", lambda: lab)
    extensions = {"@jupyter/nbgrader": "0.9.6"} if installed is None else installed
    monkeypatch.setattr(doctor, "lab_extensions", lambda: (extensions, disabled or {}))
    monkeypatch.setattr(doctor, "CHECKS", [c for c in doctor.CHECKS if c[0] in
                                           ("colab", "jupyterlab", "nbgrader extension")])
    code = doctor.main()
    return code, capsys.readouterr().out


def test_doctor_reports_jupyterlab_and_the_nbgrader_extension(monkeypatch, capsys):
    code, out = run_place_checks(monkeypatch, capsys)
    assert code == 0 and "warn" not in out
    assert "ok    not on Google Colab" in out and "ok    JupyterLab 4.2.5" in out
    assert "ok    nbgrader's JupyterLab extension @jupyter/nbgrader 0.9.6, enabled" in out


def test_doctor_advises_when_the_nbgrader_extension_is_missing(monkeypatch, capsys):
    code, out = run_place_checks(monkeypatch, capsys, installed={})
    assert code == 0  # a warning: `course_utils check` works without it
    lines = out.splitlines()
    warn = next(i for i, line in enumerate(lines) if line.startswith("  warn  nbgrader extension"))
    assert "(@jupyter/nbgrader) is not installed, so there is no Validate button" in lines[warn]
    assert lines[warn + 1].startswith('        what to do: pip install -e ".[dev]"')
    assert "jupyter labextension list" in lines[warn + 1]


@pytest.mark.parametrize("disabled", [{"@jupyter/nbgrader": True},
                                      {"@jupyter/nbgrader:validate-assignment": True},
                                      {"@jupyter/nbgrader:.*": True}])
def test_doctor_advises_when_the_nbgrader_extension_is_disabled(monkeypatch, capsys, disabled):
    code, out = run_place_checks(monkeypatch, capsys, disabled=disabled)
    assert code == 0 and "is installed but disabled, so there is no Validate button" in out
    assert "what to do: jupyter labextension enable @jupyter/nbgrader" in out


def test_doctor_ignores_nbgrader_plugins_students_do_not_need(monkeypatch, capsys):
    disabled = {"@jupyter/nbgrader:formgrader": True, "@jupyter/nbgrader:create-assignment": True,
                "@jupyter/nbgrader:validate-assignment": False}
    code, out = run_place_checks(monkeypatch, capsys, disabled=disabled)
    assert code == 0 and "warn" not in out and ", enabled" in out


def test_doctor_advises_when_jupyterlab_is_missing_or_old(monkeypatch, capsys):
    code, out = run_place_checks(monkeypatch, capsys, lab=None)
    assert code == 0 and "warn  jupyterlab: JupyterLab is not installed" in out
    assert 'what to do: to work locally, pip install -e ".[dev]"' in out
    assert "nbgrader's JupyterLab extension: not needed without JupyterLab" in out
    code, out = run_place_checks(monkeypatch, capsys, lab="3.6.7")
    assert "JupyterLab 3.6.7 is too old" in out and 'what to do: pip install "jupyterlab>=4"' in out


def test_doctor_on_colab(monkeypatch, capsys):
    code, out = run_place_checks(monkeypatch, capsys, colab=True, lab=None, installed={})
    assert code == 0 and "warn" not in out
    assert "ok    on Google Colab" in out and "Runtime > Run all" in out
    assert "JupyterLab: not used on Colab" in out


def test_doctor_probes(monkeypatch):
    import types
    from importlib import metadata

    from course_utils.tools import doctor

    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert doctor.on_colab() is False
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert doctor.on_colab() is True
    assert doctor.jupyterlab_version() == metadata.version("jupyterlab")
    installed, _ = doctor.lab_extensions()
    assert installed["@jupyter/nbgrader"] == metadata.version("nbgrader")
    assert doctor.is_disabled("@jupyter/nbgrader:formgrader", {"@jupyter/nbgrader": True})
    assert not doctor.is_disabled("@jupyter/nbgrader", {"@jupyter/nbgrader:formgrader": True})


def test_xdist_workers_share_the_cores_and_their_kernels_inherit_it():
    """conftest.py: under pytest-xdist each worker (and every notebook kernel it starts)
    uses its share of the cores; the controller's own setting must not leak into workers,
    or two workers' kernels oversubscribe two cores many times over."""
    import os

    if "PYTEST_XDIST_WORKER" not in os.environ:
        pytest.skip("only meaningful under pytest-xdist (-n)")
    workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    assert os.environ["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // workers))
