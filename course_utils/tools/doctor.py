"""``python -m course_utils doctor``: is this installation ready for the course?

Each check prints one line, ``ok`` or ``FAIL`` with the reason and what to do; the command
exits 1 when any required check fails. It imports nothing heavy before it has checked that
it can, so a missing torch is reported, not raised.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

#: What the course uses each distribution for (shown when it is missing). The list of what to
#: check is the package's own metadata (pyproject.toml), read by ``requirements``.
PURPOSE = {
    "torch": "every notebook",
    "torchvision": "references for the image exercises",
    "numpy": "the Shapes world",
    "matplotlib": "every picture",
    "tqdm": "progress bars",
    "open_clip_torch": "references of notebooks 03 and 04",
    "diffusers": "references of notebook 06",
    "nbgrader": "validating and grading",
    "jupytext": "building the notebooks from their sources",
}
#: Import names that differ from the distribution's.
IMPORT_NAME = {"open_clip_torch": "open_clip", "pyzmq": "zmq", "ipython": "IPython"}

INSTALL_HINT = 'reinstall the course: pip install -e ".[dev]" (see README.md, Quick start)'


def requirements(extra: str | None = None) -> list[str]:
    """The distributions ``course_utils`` requires (``extra=None``) or adds with an extra
    ("instructor"), by name, from the installed package's metadata."""
    wanted = f'extra == "{extra}"' if extra else None
    names = []
    try:
        declared = metadata.requires("course_utils") or []
    except metadata.PackageNotFoundError:  # run from a source tree that pip never installed
        raise SystemExit(f"course_utils is not installed in this Python: {INSTALL_HINT}") from None
    for line in declared:
        requirement, _, marker = line.partition(";")
        in_extra = "extra ==" in marker
        if (wanted is None and not in_extra) or (wanted and wanted in marker.replace("'", '"')):
            name = re.match(r"[A-Za-z0-9_.-]+", requirement.strip()).group(0)
            if name.lower() != "course_utils":
                names.append(name)
    return names


class Problem(Exception):
    """A failed check: the message says what is wrong, ``advice`` (when given) what to do."""

    def __init__(self, message: str, advice: str | None = None):
        super().__init__(message)
        self.advice = advice


def check_python() -> str:
    if sys.version_info < (3, 10):  # noqa: UP036 (an old Python can still run this file)
        raise Problem(f"Python {platform.python_version()} is too old: the course needs 3.10+")
    return f"Python {platform.python_version()} ({sys.executable})"


def check_package(module: str, distribution: str, purpose: str) -> Callable[[], str]:
    def check() -> str:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise Problem(f"cannot import {module} ({error}); it is needed for {purpose}: "
                          f"{INSTALL_HINT}") from None
        try:
            return f"{distribution} {metadata.version(distribution)}"
        except metadata.PackageNotFoundError:
            return f"{distribution} (version unknown)"

    return check


def check_device() -> str:
    import torch

    from course_utils.device import get_device

    device = get_device()
    details = f"{torch.get_num_threads()} CPU threads"
    if device.type == "cuda":
        details = torch.cuda.get_device_name(device)
    return f"device {device} ({details})"


def check_data() -> str:
    from course_utils import data

    start = time.perf_counter()
    scenes = data.generate_scenes(200, seed=0)
    images = data.render_scenes(scenes, image_size=32)
    captions = data.caption_scenes(scenes, seed=0)
    seconds = time.perf_counter() - start
    if images.shape != (200, 32, 32, 3) or len(captions) != 200:
        raise Problem(f"the Shapes world made images {images.shape} and {len(captions)} captions")
    return f"Shapes world: 200 scenes with captions in {seconds:.2f} s"


def check_training() -> str:
    """A tiny forward/backward pass on the best device: does autograd work end to end?"""
    import torch
    from torch import nn

    from course_utils import data
    from course_utils.device import get_device, seed_everything

    seed_everything(0)
    device = get_device()
    dataset = data.ShapesClassification("train", size=64, seed=0, hold_out=False)
    images, labels = dataset.images.to(device), dataset.labels.to(device)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, len(data.CLASSES))).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    if not all(map(torch.isfinite, map(torch.tensor, losses))):
        raise Problem(f"the training step gave non-finite losses {losses}")
    return f"forward/backward on {device}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def check_speed() -> str:
    """A short calibration (``course_utils.tools.bench.calibrate``): how long each notebook should
    take to run on this machine's CPU, scaled from the reference machine's run."""
    from course_utils.tools.bench.budgets import REFERENCE, speed
    from course_utils.tools.bench.calibrate import calibrate

    calibration = calibrate(repeats=2)
    factor = speed(calibration)
    estimates = ", ".join(f"{name[:2]} {minutes(seconds * factor)}"
                          for name, seconds in REFERENCE.notebook_s.items())
    relative = f"{factor:.1f}× the reference machine's time" if factor >= 1.05 or \
        factor <= 0.95 else "as fast as the reference machine"
    busy = " (the machine was busy: these estimates are high)" if calibration.warnings() else ""
    return (f"speed: {calibration.seconds:.2f} s for the calibration ({relative}); on this "
            f"machine's CPU each notebook should take about: {estimates} to run top to "
            f"bottom{busy}")


def minutes(seconds: float) -> str:
    """"< 1 min", "about 3 min"."""
    return "< 1 min" if seconds < 60 else f"about {round(seconds / 60)} min"


def check_grading_tools() -> str:
    """nbgrader runs `alembic` by name when it creates a gradebook (instructors only)."""
    alembic = shutil.which("alembic")
    beside = Path(sys.executable).parent / "alembic"
    if alembic is None:
        where = f" (it is at {beside}: activate the environment)" if beside.exists() else ""
        raise Problem(f"`alembic` is not on PATH{where}; nbgrader needs it to grade")
    return f"alembic on PATH ({alembic})"


# --- where the notebooks run: Colab, or JupyterLab with nbgrader's extension ----------------

#: nbgrader's JupyterLab extension (nbgrader 0.9) and the plugin that draws the Validate button.
NBGRADER_LAB = "@jupyter/nbgrader"
VALIDATE_PLUGIN = "@jupyter/nbgrader:validate-assignment"
LAB_HINT = 'pip install -e ".[dev]" installs JupyterLab and nbgrader with its extensions'


def on_colab() -> bool:
    """Probe: does this run on Google Colab (in a notebook, or a ``!python`` cell there)?"""
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):  # no `google` package at all
        return False


def jupyterlab_version() -> str | None:
    """Probe: the installed JupyterLab's version, or None."""
    try:
        return metadata.version("jupyterlab")
    except metadata.PackageNotFoundError:
        return None


def lab_extensions() -> tuple[dict[str, str], dict[str, bool]]:
    """Probe: the installed prebuilt JupyterLab extensions (name -> version), and the
    ``disabledExtensions`` of JupyterLab's page config (pattern -> disabled), as
    ``jupyter labextension list`` reads them."""
    from jupyter_core.paths import jupyter_path
    from jupyterlab.commands import get_federated_extensions, get_static_page_config

    installed = get_federated_extensions(jupyter_path("labextensions"))
    disabled = get_static_page_config(level="all").get("disabledExtensions", {})
    if isinstance(disabled, list):
        disabled = dict.fromkeys(disabled, True)
    return {name: str(data.get("version", "?")) for name, data in installed.items()}, disabled


def is_disabled(name: str, disabled: dict[str, bool]) -> bool:
    """JupyterLab's rule: a pattern (a regular expression) set to true disables ``name``."""
    return any(value is not False and (pattern == name or re.match(pattern, name))
               for pattern, value in disabled.items())


def check_colab() -> str:
    if on_colab():
        return ("on Google Colab: no JupyterLab or nbgrader's Validate button here; check "
                "your work with Runtime > Run all (every test cell prints a ✓ line)")
    return "not on Google Colab (a local installation)"


def check_jupyterlab() -> str:
    if on_colab():
        return "JupyterLab: not used on Colab"
    version = jupyterlab_version()
    if version is None:
        raise Problem("JupyterLab is not installed", f"to work locally, {LAB_HINT}")
    if int(version.split(".")[0]) < 4:
        raise Problem(f"JupyterLab {version} is too old for nbgrader 0.9's extension",
                      'pip install "jupyterlab>=4"')
    return f"JupyterLab {version}"


def check_nbgrader_extension() -> str:
    if on_colab() or jupyterlab_version() is None:
        return "nbgrader's JupyterLab extension: not needed without JupyterLab"
    try:
        installed, disabled = lab_extensions()
    except Exception as error:
        raise Problem(f"cannot list JupyterLab's extensions ({type(error).__name__}: {error})",
                      LAB_HINT) from None
    if NBGRADER_LAB not in installed:
        raise Problem(f"nbgrader's JupyterLab extension ({NBGRADER_LAB}) is not installed, so "
                      "there is no Validate button",
                      f'{LAB_HINT}; check with `jupyter labextension list`')
    for name in (NBGRADER_LAB, VALIDATE_PLUGIN):
        if is_disabled(name, disabled):
            raise Problem(f"{name} is installed but disabled, so there is no Validate button",
                          f"jupyter labextension enable {name}   (then restart JupyterLab)")
    return f"nbgrader's JupyterLab extension {NBGRADER_LAB} {installed[NBGRADER_LAB]}, enabled"


CHECKS: list[tuple[str, Callable[[], str], bool]] = [
    ("python", check_python, True),
    *[(IMPORT_NAME.get(name, name), check_package(IMPORT_NAME.get(name, name), name,
                                                  PURPOSE.get(name, "the course")), True)
      for name in requirements()],
    # The instructor's tooling (the "instructor" extra): only instructors need it, a warning.
    *[(IMPORT_NAME.get(name, name), check_package(IMPORT_NAME.get(name, name), name,
                                                  PURPOSE.get(name, "the instructor's tools")),
       False) for name in requirements("instructor")],
    ("device", check_device, True),
    ("data", check_data, True),
    ("training", check_training, True),
    ("speed", check_speed, False),  # an estimate for the student: never a failure
    ("grading", check_grading_tools, False),  # only instructors need it: a warning
    # Where the notebooks run: warnings, since `course_utils check` works without JupyterLab.
    ("colab", check_colab, False),
    ("jupyterlab", check_jupyterlab, False),
    ("nbgrader extension", check_nbgrader_extension, False),
]


def main() -> int:
    """Run every check; print one line each; 0 when all required checks pass."""
    failed = []
    for name, check, required in CHECKS:
        if failed and name in {"device", "data", "training", "speed"}:
            print(f"  skip  {name}: needs the packages above")
            continue
        try:
            print(f"  ok    {check()}")
        except Problem as problem:
            print(f"  {'FAIL' if required else 'warn'}  {name}: {problem}")
            if problem.advice:
                print(f"        what to do: {problem.advice}")
            if required:
                failed.append(name)
        except Exception as error:  # an unexpected failure is still a readable failure
            print(f"  FAIL  {name}: {type(error).__name__}: {error}")
            failed.append(name)
    if failed:
        print(f"\n{len(failed)} check(s) failed: {', '.join(failed)}. {INSTALL_HINT}")
        return 1
    print("\nAll good: open the course with `jupyter lab notebooks/`.")
    return 0
