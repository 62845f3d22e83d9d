"""Give freed memory back to the operating system.

glibc keeps memory freed by a thread in that thread's arena; the dashboard runs every rerun in a
new thread, so each explained upload kept 0.1-1.2 GB that nothing used (`python -m benchmarks.memory`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["release_freed_memory"]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only


def release_freed_memory() -> bool:
    """Return freed heap memory of every arena to the OS (glibc `malloc_trim`); False where unavailable."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
