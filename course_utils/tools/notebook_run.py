"""Running a notebook: the one way the course's tools set up nbclient.

``check`` (selfcheck), ``bench`` and the grader all run notebooks through
``notebook_client``: a fresh ``python3`` kernel (or the grader's own kernel manager) working
in the notebook's folder, each cell interrupted after ``cell_timeout`` seconds. ``check`` and
``bench`` then run the cells with ``execute_cells``; the grader drives its kernel cell by cell
itself (``grading/execute.py``: deadlines, output limits, a jailed kernel).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

#: The kernel a notebook runs in, unless a kernel manager says otherwise.
KERNEL_NAME = "python3"


def notebook_client(notebook: nbformat.NotebookNode, *, folder: Path | str,
                    cell_timeout: float | None, client_class: type[NotebookClient] =
                    NotebookClient, **options: Any) -> NotebookClient:
    """An nbclient for ``notebook``, run in ``folder``.

    Args:
        notebook: run in place (outputs are written into its cells).
        folder: the kernel's working directory (the notebook's own folder).
        cell_timeout: seconds a cell may run before the kernel is interrupted (None: no limit,
            the caller watches the time itself).
        client_class: ``NotebookClient`` or a subclass (the grader's limits its outputs).
        options: further ``NotebookClient`` options (``allow_errors``, ``km``, ...).
    """
    options.setdefault("kernel_name", KERNEL_NAME)
    return client_class(notebook, timeout=cell_timeout, interrupt_on_timeout=True,
                        resources={"metadata": {"path": str(folder)}}, **options)


def execute_cells(client: NotebookClient,
                  notebook: nbformat.NotebookNode) -> tuple[int, Exception] | None:
    """Run the cells in order in ``client``'s started kernel, stopping at the first that
    raises: its index and the error (``CellExecutionError`` when errors are not allowed,
    ``CellTimeoutError``, ``DeadKernelError``, ...), or None when every cell ran."""
    for index, cell in enumerate(notebook.cells):
        try:
            client.execute_cell(cell, index)
        except Exception as error:
            return index, error
    return None
