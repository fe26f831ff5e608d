"""One submission's jail: its folders, its user, the command line of every process it runs
(``Jail.command``, see ``sandbox``), and the ``Watchdog`` that enforces its limits from outside."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from course_utils.tools.grading.processes import (
    UidLease,
    descendants,
    folder_bytes,
    kill_user,
    resident_bytes,
    user_processes,
)
from course_utils.tools.grading.sandbox import (
    DATA_ROOT,
    HOME,
    PACKAGE_ROOT,
    PASS_ENV,
    SANDBOX_UID,
    Limits,
    Sandbox,
)

#: A Unix socket's path holds at most 107 bytes (``sun_path``); a graded kernel's sockets lie
#: at WORKSPACE/jails/jail-XXXXXXXX/kernel/run/kernel-N, 40 bytes below the workspace.
SOCKET_PATH_MAX = 107
BELOW_WORKSPACE = 48


def make_workspace(prefix: str) -> Path:
    """A fresh, private folder for a grading run with its ``jails`` folder: in the temporary
    folder (``$TMPDIR``) when the kernels' socket paths fit below it, else in /tmp (a cluster
    worker's temporary folder can be deep: /scratch/slurm-1234567/dask-scratch-space/...)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if len(str(folder)) + BELOW_WORKSPACE > SOCKET_PATH_MAX:
        folder.rmdir()
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    (folder / "jails").mkdir()
    return folder


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
                self.memory = resident_bytes(pids)
