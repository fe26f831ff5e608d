"""``python -m course_utils benchmark``: each solution notebook's time, memory and quality.

Every solution notebook runs top to bottom in a fresh kernel (nbclient), one at a time, and
the command prints its wall time, the kernel's peak memory and the quality figures the
notebook reported with ``course_utils.report_metric``. Compare with COURSE_SPEC §7's budgets.
Timings belong here, never in the test suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from course_utils.metrics import METRIC_MIMETYPE
from course_utils.release import assignments, nbgrader_env

_WORKER = """
import json, resource, sys, time
import nbclient, nbformat
path, timeout = sys.argv[1], int(sys.argv[2])
notebook = nbformat.read(path, as_version=4)
client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                 resources={"metadata": {"path": sys.argv[3]}})
start = time.perf_counter()
error = None
try:
    client.execute()
except Exception as exc:
    error = f"{type(exc).__name__}: {str(exc)[-400:]}"
seconds = time.perf_counter() - start
metrics = [out["data"][sys.argv[4]] for cell in notebook.cells if cell.cell_type == "code"
           for out in cell.get("outputs", []) if sys.argv[4] in out.get("data", {})]
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mib": peak_kib / 1024, "metrics": metrics,
                  "error": error}))
"""


def run_notebook(path: Path, timeout: int = 1800) -> dict:
    """Execute one notebook in a fresh kernel; its time, the kernel's peak memory, metrics."""
    result = subprocess.run(
        [sys.executable, "-c", _WORKER, str(path), str(timeout), str(path.parent),
         METRIC_MIMETYPE],
        capture_output=True, text=True, env=nbgrader_env(),
    )
    if result.returncode != 0 or not result.stdout.strip():
        return {"seconds": float("nan"), "peak_mib": float("nan"), "metrics": [],
                "error": result.stderr.strip()[-400:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def format_metrics(metrics: list[dict]) -> str:
    shown = []
    for m in metrics:
        value = f"{100 * m['value']:.1f} %" if m["unit"] == "%" else f"{m['value']:.4g} {m['unit']}"
        shown.append(f"{m['name']} {value.strip()}")
    return "; ".join(shown)


def main(root: Path, names: list[str] | None = None, output: Path | None = None) -> int:
    import torch

    names = names or assignments(root)
    device = "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"device {device}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print(f"{'notebook':<28}{'seconds':>9}{'peak MiB':>10}  quality")
    results, total, failed = {}, 0.0, 0
    start = time.perf_counter()
    for name in names:
        result = run_notebook(root / "solutions" / name / f"{name}.ipynb")
        results[name] = result
        total += result["seconds"]
        line = f"{name:<28}{result['seconds']:>9.1f}{result['peak_mib']:>10.0f}  " \
               f"{format_metrics(result['metrics'])}"
        if result["error"]:
            failed += 1
            line += f"  ERROR {result['error']}"
        print(line, flush=True)
    print(f"{'total':<28}{total:>9.1f}   (wall {time.perf_counter() - start:.0f} s)")
    if output:
        output.write_text(json.dumps({"device": device, "notebooks": results}, indent=2))
    return 1 if failed else 0
