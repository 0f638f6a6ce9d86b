"""Give memory freed by a finished stage back to the OS, so the next stage does not stack on top of it.

Freed numpy arrays and arrow buffers stay mapped in the allocators' heaps (glibc's arenas, arrow's mimalloc
pool): a process's resident size then tracks the largest stage it ever ran plus the holes between live
blocks, not what it holds. ``return_freed_memory`` after a stage returns those pages (glibc
``malloc_trim``; a no-op where it does not exist). It frees nothing still referenced.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def return_freed_memory() -> None:
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        pass
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
