"""Guards the contract check and the ease probes run a detector under: no ``.cuda()``, no network.

Both are context managers that patch a global (``torch.Tensor.cuda`` / ``nn.Module.cuda``, the socket
functions) for the duration of the block and restore it on exit, so a detector that would reach for a
GPU or the internet fails at that line, with a message saying why, instead of silently depending on it.
"""
from __future__ import annotations

import contextlib
import socket

from oodbench.adapters.cuda import cuda_calls


def cpu_only():
    """``.cuda()`` on a tensor or module raises :class:`~oodbench.adapters.cuda.CudaCall` inside this block."""
    return cuda_calls("refuse")


@contextlib.contextmanager
def no_network(log: list):
    """Record (in ``log``) and refuse every socket connection attempted inside this block."""
    saved = socket.socket.connect, socket.socket.connect_ex, socket.create_connection

    def refuse(self_or_addr, *a, **k):
        log.append(repr(a[0] if a else self_or_addr))
        raise OSError("network access refused by oodbench check")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = lambda addr, *a, **k: refuse(addr)
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.create_connection = saved
