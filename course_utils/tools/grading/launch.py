"""The first program run inside a sandbox: limits, privileges, then the real command.

Usage (built by ``course_utils.tools.grading.sandbox``; never run by hand)::

    python -I -S launch.py '{"rlimits": {...}, "uid": 1234, "gid": 1234}' -- COMMAND ...

1. sets the resource limits (``RLIMIT_DATA``, ``RLIMIT_NPROC``, ``RLIMIT_CPU``, ...), soft and
   hard, so that nothing the command starts can raise them again;
2. when started as root (bubblewrap's privileged mode), switches to the grading user ``uid``,
   which is nobody's account and holds no capability (only ``--unsafe`` grading, which has
   no sandbox, may keep running as root: ``allow_root``);
3. sets ``no_new_privs``, so that no set-user-ID program can give privileges back;
4. replaces itself with ``COMMAND``.

It imports nothing but the standard library (it runs with ``-S``: no site-packages).
"""

import ctypes
import json
import os
import resource
import sys

PR_SET_NO_NEW_PRIVS = 38


def main() -> None:
    separator = sys.argv.index("--")
    config = json.loads(sys.argv[1])
    command = sys.argv[separator + 1:]
    for name, value in config.get("rlimits", {}).items():
        limit = getattr(resource, name)
        value = int(value)
        _, hard = resource.getrlimit(limit)
        if hard != resource.RLIM_INFINITY and value > hard:
            value = hard
        resource.setrlimit(limit, (value, value))
    uid, gid = config.get("uid"), config.get("gid")
    if os.getuid() == 0 and not (uid is None and config.get("allow_root")):
        if uid is None:
            sys.exit("launch.py: refusing to run a submission as root")
        os.setgroups([])
        os.setgid(int(gid))
        os.setuid(int(uid))
        if os.getuid() == 0 or os.geteuid() == 0:
            sys.exit("launch.py: could not drop root privileges")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit("launch.py: could not set no_new_privs")
    os.umask(0o022)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
