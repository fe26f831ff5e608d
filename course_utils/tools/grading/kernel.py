"""The graded kernel: started in a submission's jail through jupyter_client's public hooks.

- ``JailProvisioner``: a kernel provisioner (jupyter_client's documented way to start a
  kernel somewhere else), registered under the entry point
  ``jupyter_client.kernel_provisioners: course-utils-jail`` in ``pyproject.toml``. It wraps the
  kernel's command line in ``Jail.command`` (bubblewrap, limits, a user of its own) and hands
  the connection file to the jail's user;
- ``GradedKernelSpecs``: a kernel spec manager that knows one kernel, the graded one, which
  names that provisioner;
- ``LimitedKernelClient``: a client whose sockets refuse messages larger than ``MAX_MESSAGE``
  (a default socket option of its zmq context, set before any socket exists).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner

#: Largest single message the kernel may send (the socket drops bigger ones).
MAX_MESSAGE = 64 << 20
#: The name of the graded kernel and of its provisioner's entry point.
KERNEL_NAME = "course-utils-graded"
PROVISIONER = "course-utils-jail"


class JailProvisioner(LocalProvisioner):
    """Launches the kernel inside the jail of its kernel manager (``GradedKernelManager``)."""

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)  # writes the connection file, builds cmd
        manager = self.parent
        manager.jail.chown(Path(manager.connection_file))
        kwargs["cmd"] = manager.jail.command(kwargs["cmd"], cpu_time=manager.cpu_time)
        return kwargs


class GradedKernelSpecs(KernelSpecManager):
    """Knows one kernel: the sandbox's Python running ipykernel, through ``JailProvisioner``."""

    python: str = "python3"

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name != KERNEL_NAME:
            raise NoSuchKernel(kernel_name)
        return KernelSpec(
            argv=[self.python, "-s", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (graded)", language="python", interrupt_mode="message",
            env={}, metadata={"kernel_provisioner": {"provisioner_name": PROVISIONER}})


class LimitedKernelClient(AsyncKernelClient):
    """A kernel client whose sockets refuse messages larger than ``MAX_MESSAGE``."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # pyzmq: a context's socket options are the defaults of every socket it makes later
        self.context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)


class GradedKernelManager(AsyncKernelManager):
    """A kernel manager that carries the jail its provisioner starts the kernel in."""

    jail: Any = None
    cpu_time: float | None = None


def kernel_manager(jail, cpu_time: float | None) -> GradedKernelManager:
    """A manager for the graded kernel of ``jail``: Unix sockets in the jail's ``run`` folder
    (the jail has no network), ``cpu_time`` seconds of CPU for the kernel."""
    specs = GradedKernelSpecs()
    specs.python = jail.sandbox.python
    manager = GradedKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs,
                                  client_class=f"{__name__}.LimitedKernelClient",
                                  transport="ipc", cache_ports=False,
                                  connection_file=str(jail.run / "kernel.json"),
                                  ip=str(jail.run / "kernel"))
    manager.jail, manager.cpu_time = jail, cpu_time
    return manager
