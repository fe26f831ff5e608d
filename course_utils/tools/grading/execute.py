"""Run a notebook in a kernel that lives in the submission's jail.

:func:`execute` runs the cells one by one with ``nbclient``, with the kernel started through
``Jail.command`` (bubblewrap, limits, a user of its own) and talking to the grader over Unix
sockets in the jail's ``run`` folder (the jail has no network). From outside the kernel it
enforces:

- a per-cell timeout: the kernel is interrupted, and killed when the interrupt does not stop
  the cell within a few seconds;
- the submission's deadline, memory, process and disk limits (the jail's :class:`Watchdog`);
- output limits: a message larger than ``MAX_MESSAGE`` is refused by the socket, each cell
  keeps at most ``CELL_OUTPUT`` bytes of output, and a kernel that sends more than
  ``limits.output`` bytes in all is killed.

When the kernel dies, the remaining cells do not run; the grader scores their tests 0.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

import nbformat
import zmq
import zmq.asyncio
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from course_utils.tools.grading.jail import Jail, Watchdog
from course_utils.tools.grading.kernel import kernel_manager
from course_utils.tools.grading.safefile import read_regular
from course_utils.tools.notebook_run import notebook_client

#: Output kept per cell; the rest is dropped with a note.
CELL_OUTPUT = 2 << 20
#: Seconds an interrupted cell has to stop before the kernel is killed.
GRACE = 5.0
#: What Python, NumPy and torch say when an allocation fails (also inside a CheckFailure).
OUT_OF_MEMORY = re.compile(r"MemoryError|Unable to allocate|not enough memory|"
                           r"can't allocate memory|out of memory", re.IGNORECASE)


def _size(value: Any, budget: int = 1 << 30) -> int:
    """Rough byte size of a message's content (strings and buffers), stopping at ``budget``."""
    total, todo = 0, [value]
    while todo and total < budget:
        item = todo.pop()
        if isinstance(item, str | bytes | bytearray | memoryview):
            total += len(item)
        elif isinstance(item, dict):
            todo.extend(item.values())
            total += 8 * len(item)
        elif isinstance(item, list | tuple):
            todo.extend(item)
        else:
            total += 8
    return total


class JailedClient(NotebookClient):
    """nbclient with output limits; the kernel is killed when it floods the grader."""

    def __init__(self, nb, *, jail: Jail, **kwargs):
        super().__init__(nb, **kwargs)
        self.jail = jail
        self.total_output = 0
        self.cell_output: dict[int, int] = {}
        self.truncated: set[int] = set()
        self.on_cell_executed = self._record_reply_error

    def _record_reply_error(self, cell, cell_index, execute_reply) -> None:
        """An error the kernel replied with but whose output never came (as nbgrader does):
        a failed cell must look failed."""
        content = execute_reply.get("content", {})
        if content.get("status") != "error":
            return
        if any(o.get("output_type") == "error" and o.get("ename") == content.get("ename")
               for o in cell.outputs):
            return
        cell.outputs.append(nbformat.v4.new_output(
            "error", ename=str(content.get("ename", "Error")),
            evalue=str(content.get("evalue", ""))[:2000],
            traceback=[str(line)[:2000] for line in content.get("traceback", [])[-50:]]))

    def process_message(self, msg, cell, cell_index):
        size = _size(msg.get("content")) + _size(msg.get("buffers") or [])
        self.total_output += size
        if self.total_output > self.jail.limits.output:
            self.jail.kill("output_limit", self.km.provisioner.pid if self.km and
                           self.km.provisioner else None)
        return super().process_message(msg, cell, cell_index)

    def output(self, outs, msg, display_id, cell_index):
        size = _size(msg.get("content"))
        used = self.cell_output.get(cell_index, 0) + size
        self.cell_output[cell_index] = used
        if used > CELL_OUTPUT or self.total_output > self.jail.limits.output:
            self.truncated.add(cell_index)
            return None
        return super().output(outs, msg, display_id, cell_index)


@dataclass
class CellRun:
    index: int
    grade_id: str | None
    status: str  # "ok", "error", "timeout", "died" (the kernel died in it), "not_run"
    seconds: float = 0.0


@dataclass
class Execution:
    notebook: nbformat.NotebookNode
    cells: dict[int, CellRun] = field(default_factory=dict)
    killed: str | None = None  # why the jail was killed ("timeout", "memory_limit", ...)
    died: bool = False  # the kernel died before the end
    started: bool = True  # the kernel started at all
    timeouts: list[str] = field(default_factory=list)
    memory_errors: bool = False
    seconds: float = 0.0
    log: str = ""


def error_output(name: str, text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("error", ename=name, evalue=text,
                                  traceback=[f"\x1b[0;31m{name}\x1b[0m: {text}"])


def _grade_id(cell) -> str | None:
    info = cell.get("metadata", {}).get("nbgrader", {})
    return info.get("grade_id") if isinstance(info, dict) else None


def execute(notebook: nbformat.NotebookNode, jail: Jail, *, cell_timeout: float,
            deadline: float, startup_timeout: float = 120) -> Execution:
    """Run ``notebook`` (in place) in a kernel in ``jail``; see the module's docstring."""
    return asyncio.run(_execute(notebook, jail, cell_timeout, deadline, startup_timeout))


async def _execute(notebook, jail: Jail, cell_timeout: float, deadline: float,
                   startup_timeout: float) -> Execution:
    started_at = time.monotonic()
    result = Execution(notebook)
    manager = kernel_manager(jail, cpu_time=max(1.0, deadline - started_at) + 30)
    jail.reset()
    options = jail.popen_options()
    client = notebook_client(notebook, folder=options["cwd"], cell_timeout=None,
                             client_class=JailedClient, km=manager, jail=jail,
                             allow_errors=True, startup_timeout=int(startup_timeout),
                             record_timing=False, iopub_timeout=4,
                             raise_on_iopub_timeout=False, shutdown_kernel="immediate",
                             extra_arguments=["--HistoryManager.hist_file=:memory:"])
    log_path = jail.root / "kernel.log"

    def root_pid() -> int | None:
        provisioner = manager.provisioner
        return getattr(provisioner, "pid", None) if provisioner else None

    watchdog = Watchdog(jail, root_pid, deadline)
    with open(log_path, "wb") as log:
        try:
            async with client.async_setup_kernel(cwd=options["cwd"], env=options["env"],
                                                 stdout=log, stderr=log):
                watchdog.start()
                await _run_cells(client, notebook, jail, result, cell_timeout, root_pid)
        except Exception as error:
            if not result.cells:  # the kernel never started
                result.started = False
            else:  # lost in the middle: what did not run scores 0
                result.died = True
                jail.kill("kernel_died", root_pid())
            result.log = f"{type(error).__name__}: {error}"
        finally:
            watchdog.stop()
            jail.cleanup(root_pid())
            atexit.unregister(client._cleanup_kernel)  # nbclient leaves it when start fails
            with contextlib.suppress(Exception):
                await manager.cleanup_resources()
    with contextlib.suppress(OSError):
        tail = read_regular(log_path, 3000, tail=True).decode("utf-8", "replace")
        result.log = (result.log + "\n" + tail).strip()
    result.killed = jail.killed
    result.seconds = time.monotonic() - started_at
    for index, cell in enumerate(notebook.cells):
        if index in client.truncated:
            cell.outputs.append(nbformat.v4.new_output(
                "stream", name="stdout", text=f"\n[... output truncated: this cell printed more "
                                              f"than {CELL_OUTPUT >> 20} MB ...]\n"))
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and OUT_OF_MEMORY.search(
                    f"{output.get('ename')}: {output.get('evalue')}"):
                result.memory_errors = True
    return result


async def _watch_channels(client: JailedClient, jail: Jail, root_pid) -> None:
    """Kill the kernel when a channel to it is cut while it runs: a message over
    ``MAX_MESSAGE`` makes the socket drop the connection, and every output after it (errors
    included) would be lost, so the notebook's record would no longer be trustworthy."""
    from zmq.utils.monitor import parse_monitor_message

    monitors = [channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
                for channel in (client.kc.iopub_channel, client.kc.shell_channel)]
    poller = zmq.asyncio.Poller()
    for monitor in monitors:
        poller.register(monitor, zmq.POLLIN)
    try:
        while True:
            for monitor, _ in await poller.poll():
                event = parse_monitor_message(await monitor.recv_multipart())
                if event["event"] != zmq.EVENT_DISCONNECTED:
                    continue
                await asyncio.sleep(0.5)
                if await _alive(client.km):  # a dying kernel disconnects too: not this
                    jail.kill("output_limit", root_pid())
                    return
    finally:
        for monitor in monitors:
            monitor.close(linger=0)


async def _run_cells(client: JailedClient, notebook, jail: Jail, result: Execution,
                     cell_timeout: float, root_pid) -> None:
    watcher = asyncio.ensure_future(_watch_channels(client, jail, root_pid))
    try:
        await _run_each_cell(client, notebook, jail, result, cell_timeout, root_pid)
    finally:
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher


async def _run_each_cell(client: JailedClient, notebook, jail: Jail, result: Execution,
                         cell_timeout: float, root_pid) -> None:
    manager = client.km
    dead = False
    count = 0
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        grade_id = _grade_id(cell)
        if not cell.source.strip():
            continue
        if dead:
            result.cells[index] = CellRun(index, grade_id, "not_run")
            continue
        count += 1
        begin = time.monotonic()
        status = "ok"
        task = asyncio.ensure_future(client.async_execute_cell(cell, index,
                                                               execution_count=count))
        done, _ = await asyncio.wait({task}, timeout=cell_timeout)
        if not done:
            status = "timeout"
            result.timeouts.append(grade_id or f"cell {index}")
            with contextlib.suppress(Exception):
                await manager.interrupt_kernel()
            done, _ = await asyncio.wait({task}, timeout=GRACE)
            if not done:
                jail.kill("timeout", root_pid())
        try:
            await task
            if status == "ok" and any(o.get("output_type") == "error" for o in cell.outputs):
                status = "error"
        except DeadKernelError:
            dead = True
            status = "died" if status == "ok" else status
            reason = jail.killed or "the kernel died"
            cell.outputs.append(error_output("KernelDied", f"the kernel stopped while this cell "
                                                           f"ran ({describe(reason)})"))
        except Exception as error:
            dead = True
            status = "died"
            jail.kill("kernel_died", root_pid())
            cell.outputs.append(error_output("KernelDied", f"{type(error).__name__}: {error}"))
        if not dead and not await _alive(manager):
            dead = True
        result.cells[index] = CellRun(index, grade_id, status, time.monotonic() - begin)
        if dead:
            result.died = True


async def _alive(manager) -> bool:
    try:
        return bool(await manager.is_alive())
    except Exception:
        return False


def describe(reason: str) -> str:
    return {
        "timeout": "time limit",
        "memory_limit": "it used more memory than allowed",
        "process_limit": "it started too many processes",
        "disk_limit": "it wrote more to disk than allowed",
        "output_limit": "it printed more output than allowed",
        "kernel_died": "the kernel died",
        "the kernel died": "the kernel died: os._exit, a crash, or a signal",
    }.get(reason, reason)
