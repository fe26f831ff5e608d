"""Google Colab, simulated offline: each student notebook's set-up cell, run as Colab runs it.

On Colab the kernel has ``google.colab`` imported and torch, torchvision, numpy and matplotlib
installed, but not the course package; the set-up cell installs it from the repository. The
simulation reproduces that without the network:

- a fresh virtual environment whose ``.pth`` file shows it this environment's packages, less
  ``course_utils`` and what Colab does not have (nbgrader, JupyterLab, jupytext): an install
  that pulled in the course's dependencies would need a download, and fails;
- a kernel that imports a stand-in ``google.colab`` when it starts;
- git told to fetch ``REPOSITORY_URL`` from a snapshot of this work tree
  (``url.<snapshot>.insteadOf``), and pip told never to use an index, so that the set-up
  cell runs exactly as released.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

import course_utils
from tests.notebook_code import ROOT, assignments

NAMES = assignments()
#: What Colab does not ship of the course's dependencies (and does not need: grading tools).
NOT_ON_COLAB = ("nbgrader", "jupyterlab", "jupytext")
#: A repository that cannot be reached: nothing listens on the discard port of the loopback.
UNREACHABLE = "http://127.0.0.1:9/course.git"
#: The first sentence of the set-up cell's message when the install fails.
INSTALL_ADVICE = "Could not install the course package: check that this runtime is connected"
#: ... and when a kernel outside Colab cannot import the course.
KERNEL_ADVICE = "This kernel cannot import course_utils: choose the course's kernel"
#: Notebooks whose training a GPU speeds up: their set-up text says how to get one on Colab.
GPU_NOTEBOOKS = ("04_mini_clip", "05_vilt_vqa", "06_diffusion", "07_captioning")
GPU_ADVICE = "Runtime → Change runtime type → T4 GPU"
#: The stand-in imported before the kernel starts, as Colab's runtime does.
BOOT = "import google.colab; from ipykernel.kernelapp import launch_new_instance; " \
       "launch_new_instance()"


def nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def hidden(entry: str) -> bool:
    """Whether a site-packages entry (a package, a module, a .dist-info) stays out of the
    simulated Colab."""
    name = entry.split("-")[0].split(".")[0].lower()
    return entry.startswith("__editable__") or name in {"course_utils", *NOT_ON_COLAB}


# --- the simulated machine ------------------------------------------------------------------


@dataclass
class Colab:
    """What every simulated runtime shares: the packages, the stand-in and the repository."""

    root: Path
    view: Path  # links to this environment's packages, less the hidden ones
    stub: Path  # holds google/colab/__init__.py
    repository: Path  # a git snapshot of the work tree's package files

    def runtime(self, name: str, colab: bool = True) -> Runtime:
        """A fresh virtual environment (no course_utils) and the kernel that runs in it."""
        home = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home / "venv")],
                       check=True)
        python = home / "venv" / "bin" / "python"
        site = Path(subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True).stdout.strip())
        (site / "colab_view.pth").write_text(f"{self.view}\n")
        work = home / "work"
        work.mkdir()
        env = {
            "PYTHONPATH": str(self.stub) if colab else "",
            # git fetches the course from the snapshot; pip never looks at an index, builds
            # with the packages at hand (PIP_NO_BUILD_ISOLATION=0 is pip's spelling of
            # --no-build-isolation), and reads no configuration of this machine's
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"url.{self.repository.as_uri()}.insteadOf",
            "GIT_CONFIG_VALUE_0": course_utils.REPOSITORY_URL,
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INDEX": "1",
            "PIP_NO_BUILD_ISOLATION": "0",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_CACHE_DIR": str(home / "pip-cache"),
        }
        argv = [str(python), "-c", BOOT, "-f", "{connection_file}"] if colab else \
            [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        return Runtime(python=python, site=site, work=work, kernels=home / "kernels", env=env,
                       argv=argv)


@dataclass
class Runtime:
    python: Path
    site: Path  # the venv's own site-packages: where pip installs
    work: Path  # the kernel's working directory (course_utils is not importable from it)
    kernels: Path  # its kernel spec
    env: dict[str, str]
    argv: list[str]
    kernel: object = field(default=None, repr=False)

    def installed(self) -> set[str]:
        return {p.name for p in self.site.iterdir()} - {"colab_view.pth", "__pycache__"}

    def start(self) -> Runtime:
        from jupyter_client import KernelManager
        from jupyter_client.kernelspec import KernelSpecManager

        spec = self.kernels / "colab" / "kernel.json"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(json.dumps({"argv": self.argv, "env": self.env, "language": "python",
                                    "display_name": "simulated Colab"}))
        specs = KernelSpecManager(kernel_dirs=[str(self.kernels)])
        manager = KernelManager(kernel_name="colab", kernel_spec_manager=specs)
        manager.start_kernel(cwd=str(self.work))
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        self.kernel = (manager, client)
        return self

    def stop(self) -> None:
        if self.kernel:
            manager, client = self.kernel
            client.stop_channels()
            manager.shutdown_kernel(now=True)
            self.kernel = None

    def run(self, source: str, timeout: float = 120) -> Result:
        """Run one cell; return its status and what it showed."""
        _, client = self.kernel
        result = Result()
        reply = client.execute_interactive(source, output_hook=result.collect, timeout=timeout,
                                           store_history=False)
        result.status = reply["content"]["status"]
        return result


@dataclass
class Result:
    status: str = ""
    stdout: str = ""
    stderr: str = ""
    errors: list[dict] = field(default_factory=list)

    def collect(self, message: dict) -> None:
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            setattr(self, content["name"], getattr(self, content["name"]) + content["text"])
        elif kind == "error":
            self.errors.append(content)

    @property
    def shown(self) -> str:
        """Everything the cell showed, error output included, as one text."""
        tracebacks = ["\n".join(e["traceback"]) for e in self.errors]
        return "\n".join([self.stdout, self.stderr, *tracebacks])

    def explain(self) -> str:
        return f"status {self.status}:\n{self.shown}"


def snapshot(destination: Path) -> Path:
    """A git repository holding what ``pip install git+REPOSITORY_URL`` builds, as this work
    tree has it now (committed or not): the package and the files its build reads."""
    shutil.copytree(ROOT / "course_utils", destination / "course_utils",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, destination / name)
    git = ["git", "-c", "user.name=course", "-c", "user.email=course@localhost",
           "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null", "-C", str(destination)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], check=True)
    return destination


@pytest.fixture(scope="module")
def colab(tmp_path_factory) -> Colab:
    root = tmp_path_factory.mktemp("colab")
    view = root / "site-packages"
    view.mkdir()
    packages = Path(sysconfig.get_paths()["purelib"])
    for entry in packages.iterdir():
        if not entry.name.endswith(".pth") and not hidden(entry.name):
            (view / entry.name).symlink_to(entry)
    stub = root / "stub"
    (stub / "google" / "colab").mkdir(parents=True)  # google/: a namespace package
    (stub / "google" / "colab" / "__init__.py").write_text('"""A stand-in for Colab."""\n')
    repository = snapshot(root / "repository")
    return Colab(root=root, view=view, stub=stub, repository=repository)


@pytest.fixture
def kernel():
    """Start a runtime's kernel; stop it when the test ends."""
    started = []

    def start(runtime: Runtime) -> Runtime:
        started.append(runtime.start())
        return runtime

    yield start
    for runtime in started:
        runtime.stop()


# --- the notebooks --------------------------------------------------------------------------


def student_notebook(name: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / name / f"{name}.ipynb", as_version=4)


def setup_cell(name: str) -> str:
    cells = [c for c in student_notebook(name).cells if nbgrader(c).get("grade_id") == "setup"]
    assert len(cells) == 1, f"{name}: one set-up cell"
    return cells[0].source


def first_exercise(name: str) -> list[tuple[str, str]]:
    """(label, source) of the cells up to the first test cell that an exercise may use:
    exercise cells (the student's stub, then the instructor's solution) and ``helpers_*``
    cells (``course_utils.tools.solutions``); then that test cell."""
    solved = {nbgrader(c).get("grade_id"): c.source
              for c in nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb",
                                     as_version=4).cells}
    steps = []
    for cell in student_notebook(name).cells:
        info = nbgrader(cell)
        grade_id = info.get("grade_id", "")
        if cell.cell_type != "code" or grade_id == "setup":
            continue
        if info.get("solution"):
            steps += [(f"{grade_id} (blank)", cell.source), (grade_id, solved[grade_id])]
        elif info.get("grade"):
            return [*steps, (grade_id, cell.source)]
        elif grade_id.startswith("helpers"):
            steps.append((grade_id, cell.source))
    raise AssertionError(f"{name} has no test cell")


def assert_no_traceback(result: Result) -> None:
    shown = result.shown
    for trace in ("Traceback", "CalledProcessError", 'File "'):
        assert trace not in shown, f"a traceback reached the student:\n{shown}"


# --- the tests ------------------------------------------------------------------------------


def install_code(source: str) -> str:
    """The set-up cell's lines up to the end of its Colab install (its first top-level ``if``
    that mentions google.colab)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and "google.colab" in ast.get_source_segment(source, node):
            return "\n".join(source.splitlines()[:node.end_lineno])
    raise AssertionError("the set-up cell has no `if` that installs the course on Colab")


def test_every_notebook_installs_with_the_same_code():
    """One install code for every notebook (the imports after it differ)."""
    code = {name: install_code(setup_cell(name)) for name in NAMES}
    assert len(set(code.values())) == 1, f"the set-up cells' install code differs: {code}"


def test_the_set_up_cell_installs_the_course_alone_and_is_a_few_lines():
    """pip installs the course package with its declared dependencies (lower bounds only, so
    that pip keeps Colab's torch): no pinned package and no ``--no-deps`` in the cell."""
    code = install_code(setup_cell(NAMES[0]))
    assert len(code.splitlines()) <= 20, f"the install code grew to {len(code.splitlines())} lines"
    requirements = re.findall(r'"([A-Za-z0-9_.-]+[<>=!~][^"]*)"', code)
    assert not requirements, f"the set-up cell pins {requirements}: pyproject.toml's job"
    assert "--no-deps" not in code
    assert f'git+{course_utils.REPOSITORY_URL}"' in code and '"course_utils @ "' in code
    dependencies = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(),
                             re.S | re.M).group(1)
    assert "<" not in dependencies, "upper bounds belong in constraints.txt"


@pytest.mark.parametrize("name", [name for name in GPU_NOTEBOOKS if name in NAMES])
def test_notebooks_that_train_long_say_how_to_get_a_gpu_on_colab(name):
    cells = student_notebook(name).cells
    setup = next(i for i, c in enumerate(cells) if nbgrader(c).get("grade_id") == "setup")
    assert GPU_ADVICE in cells[setup - 1].source, \
        f"the text before the set-up cell should say: on Colab, {GPU_ADVICE}"


def test_first_run_on_colab_installs_the_course_package_alone(colab, kernel):
    name = NAMES[0]
    runtime = kernel(colab.runtime("first-run"))
    setup = runtime.run(setup_cell(name))
    assert setup.status == "ok", setup.explain()
    assert "Installing" in setup.stdout
    assert runtime.installed() and all(p.startswith("course_utils") for p in runtime.installed()), \
        f"the set-up cell installed more than the course package: {sorted(runtime.installed())}"
    where = runtime.run("print(course_utils.__file__)")
    assert where.stdout.startswith(str(runtime.site)), where.explain()
    for label, source in first_exercise(name):
        result = runtime.run(source)
        assert result.status == "ok", f"{label}: {result.explain()}"

    # run again (a student re-runs the cell): nothing to install, so the repository is not
    # even asked for
    runtime.run(f"import os; os.environ['GIT_CONFIG_KEY_0'] = 'url.{UNREACHABLE}.insteadOf'")
    again = runtime.run(setup_cell(name))
    assert again.status == "ok", again.explain()
    assert "Installing" not in again.stdout


@pytest.fixture(scope="module")
def installed(colab) -> Runtime:
    """A Colab runtime where the set-up cell has already installed the course package; its
    repository is unreachable, so that a second install would fail."""
    runtime = colab.runtime("installed")
    subprocess.run([runtime.python, "-m", "pip", "install", "-q", "--no-deps",
                    str(colab.repository)], env={**os.environ, **runtime.env}, check=True,
                   capture_output=True)
    runtime.env["GIT_CONFIG_KEY_0"] = f"url.{UNREACHABLE}.insteadOf"
    return runtime


@pytest.mark.parametrize("name", NAMES)
def test_each_notebook_sets_up_on_colab_and_runs_its_first_exercise(installed, kernel, name):
    runtime = kernel(installed)
    setup = runtime.run(setup_cell(name))
    assert setup.status == "ok", setup.explain()
    assert "Installing" not in setup.stdout, "the package was there: nothing to install"
    assert "device:" in setup.stdout
    for label, source in first_exercise(name):
        result = runtime.run(source)
        assert result.status == "ok", f"{label}: {result.explain()}"
        assert result.stderr == "", f"{label} wrote to stderr:\n{result.stderr}"


def test_a_failed_install_says_what_to_do_without_a_traceback(colab, kernel):
    runtime = colab.runtime("offline")
    runtime.env["GIT_CONFIG_KEY_0"] = f"url.{UNREACHABLE}.insteadOf"
    kernel(runtime)
    setup = runtime.run(setup_cell(NAMES[0]))
    assert setup.status == "error", "the cell must stop Run All"
    assert INSTALL_ADVICE in setup.shown, setup.explain()
    assert_no_traceback(setup)
    assert runtime.installed() == set()


def test_a_kernel_without_the_course_says_which_kernel_to_choose(colab, kernel):
    runtime = kernel(colab.runtime("wrong-kernel", colab=False))
    setup = runtime.run(setup_cell(NAMES[0]))
    assert setup.status == "error"
    assert KERNEL_ADVICE in setup.shown, setup.explain()
    assert_no_traceback(setup)
