"""Guards the contract check and the ease probes run a detector under: no ``.cuda()``, no network.

Both are context managers that patch a global (``torch.Tensor.cuda`` / ``nn.Module.cuda``, the socket
functions) for the duration of the block and restore it on exit, so a detector that would reach for a
GPU or the internet fails at that line, with a message saying why, instead of silently depending on it.
"""
from __future__ import annotations

import contextlib
import socket


class CudaCall(RuntimeError):
    """A detector called ``.cuda()`` inside :func:`cpu_only`."""


# -> adapters.cuda (lead merges): becomes oodbench.adapters.cuda.cuda_calls(mode="refuse")
@contextlib.contextmanager
def cpu_only():
    """``.cuda()`` on a tensor or module raises :class:`CudaCall` inside this block."""
    import torch

    def refuse(self, *a, **k):
        raise CudaCall("called .cuda(); fit and score must work on CPU (use the representation's device)")

    saved = torch.Tensor.cuda, torch.nn.Module.cuda
    torch.Tensor.cuda, torch.nn.Module.cuda = refuse, refuse
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.nn.Module.cuda = saved


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
