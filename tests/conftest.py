import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # pictures are drawn, never shown

# Under pytest-xdist, share the cores between the workers (and the notebook kernels they
# start, which inherit OMP_NUM_THREADS) instead of oversubscribing them.
# A worker inherits the controller's environment, where this file ran first with one
# "worker": the worker must override what the controller set, not keep it.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_threads = max(1, (os.cpu_count() or 1) // _workers)
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(_threads)
else:
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def offline(monkeypatch):
    """No network: every connection and DNS lookup raises OSError (the pretrained sections'
    offline path)."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("the network is switched off in this test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
