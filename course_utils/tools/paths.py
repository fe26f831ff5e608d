"""Where the course is, and the environment its tools run nbgrader in."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def repository_root() -> Path:
    """The course folder: the one holding ``nbgrader_config.py`` (searched from the cwd up)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file() and (folder / "solutions").is_dir():
            return folder
    raise FileNotFoundError(
        "no course folder here: run this from the repository (the folder with "
        "nbgrader_config.py and solutions/)"
    )


def nbgrader_env() -> dict[str, str]:
    """The environment for nbgrader: this Python's bin folder first on PATH (nbgrader calls
    ``alembic`` by name when it creates a gradebook)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env
