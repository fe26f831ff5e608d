"""Whether the network is reachable: the optional "pretrained" sections ask before they
download (nothing else in the course downloads anything)."""

from __future__ import annotations

import socket
import threading


def network_available(host: str = "huggingface.co", port: int = 443,
                      timeout: float = 2.0) -> bool:
    """True if a TCP connection to host:port opens within ``timeout`` seconds, DNS included.

    The probe runs in a daemon thread, so a slow DNS lookup cannot hold the caller longer
    than ``timeout``.
    """
    reachable: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            reachable.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(reachable)
