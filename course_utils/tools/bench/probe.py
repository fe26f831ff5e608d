"""Run inside a notebook's kernel after its last cell: what the kernel process used.

Standard library only, so that importing it does not change what it measures.
"""

from __future__ import annotations

import json
import re
import sys


def peak_memory_mib() -> float | None:
    """This process's peak resident memory in MiB (None where it cannot be read).

    On Linux, ``VmHWM`` of /proc/self/status: the peak of this process alone, since it
    started. (``ru_maxrss`` would not do: a child keeps its parent's maxrss across exec, so a
    kernel started by a 1 GB process reports at least 1 GB; and RUSAGE_CHILDREN of the parent
    is the largest of all its children and their own children.) Elsewhere ``ru_maxrss``
    (bytes on macOS, KiB on other Unixes), which has that caveat.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            found = re.search(r"^VmHWM:\s*(\d+) kB", status.read(), re.MULTILINE)
        if found:
            return int(found.group(1)) / 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def kernel_figures() -> str:
    """JSON of ``{"peak_mib", "gpu_peak_mib", "device"}`` for this kernel (see NotebookRun).

    torch and course_utils are asked only if the notebook imported them.
    """
    torch = sys.modules.get("torch")
    gpu_peak = None
    if torch is not None and torch.cuda.is_initialized():
        gpu_peak = torch.cuda.max_memory_allocated() / 2**20
    device = None
    if "course_utils.device" in sys.modules:
        try:
            device = str(sys.modules["course_utils.device"].get_device())
        except Exception:  # e.g. COURSE_DEVICE names a device this machine lacks
            pass
    return json.dumps({"peak_mib": peak_memory_mib(), "gpu_peak_mib": gpu_peak, "device": device})
