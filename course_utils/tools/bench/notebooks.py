"""Run one notebook in a fresh kernel and measure it."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

from course_utils.device import DEVICE_VARIABLE
from course_utils.metrics import BENCH_VARIABLE, METRIC_MIMETYPE
from course_utils.tools.bench.results import Metric, NotebookRun
from course_utils.tools.notebook_run import execute_cells, notebook_client
from course_utils.tools.paths import nbgrader_env

#: The last cell, run in the kernel once the notebook's cells are done (or one failed).
PROBE_CELL = "from course_utils.tools.bench.probe import kernel_figures\nprint(kernel_figures())"

#: Per-cell time limit of a benchmark run: generous, a notebook's budget is checked afterwards.
CELL_TIMEOUT_S = 1800


def kernel_environment(device: str) -> dict[str, str]:
    """The environment of a benchmarked kernel: this one, plus

    - COURSE_DEVICE=device, which ``course_utils.get_device()`` obeys, so that the notebooks
      run unchanged on the device asked for; for "cpu" the GPUs are also hidden
      (CUDA_VISIBLE_DEVICES=""), for code that would look for one itself;
    - COURSE_BENCH=1, so that ``report_metric`` leaves machine-readable figures;
    - this Python's bin folder first on PATH (``paths.nbgrader_env``).
    """
    env = nbgrader_env()
    env[DEVICE_VARIABLE] = device
    env[BENCH_VARIABLE] = "1"
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_notebook(path: Path, device: str, cell_timeout: float = CELL_TIMEOUT_S) -> NotebookRun:
    """Execute the notebook at ``path`` top to bottom in a fresh kernel, in its own folder,
    and measure it (see NotebookRun). The first failing cell stops the run and is the error;
    the kernel is measured all the same, if it is still alive."""
    notebook = nbformat.read(path, as_version=4)
    run = NotebookRun(name=path.stem)
    client = notebook_client(notebook, folder=path.parent, cell_timeout=cell_timeout)
    with tempfile.TemporaryFile() as kernel_log:  # the kernel's own stderr (not the cells')
        start = time.perf_counter()
        try:
            with client.setup_kernel(env=kernel_environment(device), stderr=kernel_log):
                failure = execute_cells(client, notebook)
                run.seconds = time.perf_counter() - start
                died = failure is not None and isinstance(failure[1], DeadKernelError)
                if not died:
                    measure_kernel(client, run)
                if failure is not None:
                    run.error = (describe_failure(notebook, *failure, cell_timeout)
                                 + (kernel_log_tail(kernel_log) if died else ""))
        except Exception as error:  # the kernel did not start (or not stop)
            if run.seconds is None:
                run.error = (f"the kernel failed to start: {type(error).__name__}: {error}"
                             f"{kernel_log_tail(kernel_log)}")
    run.metrics = collected_metrics(notebook)
    return run


def describe_failure(notebook: nbformat.NotebookNode, index: int, error: Exception,
                     cell_timeout: float) -> str:
    """One line naming the cell (its index and grade_id) and the error, at most 400 characters
    of it (the end, where the exception's message is)."""
    grade_id = notebook.cells[index].metadata.get("nbgrader", {}).get("grade_id")
    where = f"cell {index}" + (f" ({grade_id})" if grade_id else "")
    if isinstance(error, CellExecutionError) and error.ename == "KeyboardInterrupt":
        reason = f"still running after the per-cell limit of {cell_timeout:g} s (interrupted)"
    elif isinstance(error, CellExecutionError):
        reason = f"{error.ename}: {error.evalue}"
    else:
        reason = f"{type(error).__name__}: {error}"
    return f"{where}: {reason[-400:]}"


def measure_kernel(client: NotebookClient, run: NotebookRun) -> None:
    """Fill in ``run``'s peak memory and device from the live kernel (``probe``); leave them
    None if the kernel cannot answer. The notebook is left as it was."""
    cells = client.nb.cells
    cells.append(nbformat.v4.new_code_cell(PROBE_CELL))  # nbclient writes a cell back by index
    try:
        client.execute_cell(cells[-1], len(cells) - 1, store_history=False)
        text = "".join(o.get("text", "") for o in cells[-1].outputs if o.output_type == "stream")
        figures = json.loads(text.strip().splitlines()[-1])
    except Exception:  # a dead kernel, or course_utils not importable there
        return
    finally:
        cells.pop()
    run.peak_mib = figures["peak_mib"]
    run.gpu_peak_mib = figures["gpu_peak_mib"]
    run.device = figures["device"]


def collected_metrics(notebook: nbformat.NotebookNode) -> list[Metric]:
    """The figures ``report_metric`` left in the executed notebook's outputs, in order."""
    return [Metric(**output["data"][METRIC_MIMETYPE])
            for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if METRIC_MIMETYPE in output.get("data", {})]


def kernel_log_tail(log, characters: int = 400) -> str:
    """The end of what the kernel process wrote to its stderr, to explain a dead kernel."""
    log.seek(0)
    text = log.read().decode(errors="replace").strip()
    return f"\nthe kernel's stderr ends: {text[-characters:]}" if text else ""


def assignment_notebook(root: Path, name: str) -> Path:
    """``root/solutions/name/name.ipynb``; FileNotFoundError naming the choices if absent."""
    path = Path(root) / "solutions" / name / f"{name}.ipynb"
    if not path.is_file():
        from course_utils.tools.release import assignments

        raise FileNotFoundError(f"no solution notebook {path}; the assignments are: "
                                f"{', '.join(assignments(root))}")
    return path

