"""Durability helpers both ends share (standard library only)."""
from __future__ import annotations

import ctypes
import os


def syncfs(directory: str | os.PathLike) -> None:
    """Make everything written to the filesystem holding ``directory`` durable, with one syscall.

    By hand because neither the standard library (os.sync flushes every filesystem of the machine)
    nor any storage library offers syncfs(2): it lets a pack of thousands of chunks, or a download of
    thousands of small files, cost one flush instead of an fsync per file and per directory."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        if libc.syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), str(directory))
    finally:
        os.close(fd)
