"""The graded kernel starts through jupyter_client's public extension points only."""

from __future__ import annotations

import inspect

import pytest
import zmq
from jupyter_client.provisioning import KernelProvisionerFactory

from course_utils.tools.grading import kernel


def test_the_jail_provisioner_is_registered_and_named_by_the_graded_kernel_spec():
    factory = KernelProvisionerFactory.instance()
    spec = kernel.GradedKernelSpecs().get_kernel_spec(kernel.KERNEL_NAME)
    assert spec.metadata["kernel_provisioner"]["provisioner_name"] == kernel.PROVISIONER
    assert factory.is_provisioner_available(spec)


def test_the_graded_kernel_spec_knows_no_other_kernel():
    from jupyter_client.kernelspec import NoSuchKernel

    with pytest.raises(NoSuchKernel):
        kernel.GradedKernelSpecs().get_kernel_spec("python3")


def test_every_socket_of_the_graded_client_refuses_oversized_messages():
    client = kernel.LimitedKernelClient()
    socket = client.context.socket(zmq.DEALER)
    try:
        assert socket.getsockopt(zmq.MAXMSGSIZE) == kernel.MAX_MESSAGE
    finally:
        socket.close(linger=0)
        client.context.destroy(linger=0)


def test_nothing_private_of_jupyter_client_is_overridden():
    for cls in (kernel.JailProvisioner, kernel.GradedKernelSpecs, kernel.LimitedKernelClient,
                kernel.GradedKernelManager):
        own = [name for name, value in vars(cls).items()
               if inspect.isfunction(value) and name.startswith("_") and name != "__init__"]
        assert not own, f"{cls.__name__} overrides {own}"
