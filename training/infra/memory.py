"""Give freed memory back to the operating system, so a long run's peak is what it holds, not what it held.

glibc serves blocks below its mmap threshold from the heap and, each time a larger block is freed, raises
that threshold (up to 32 MB). After the first big numpy array is freed, arrays of a few megabytes (a
fold's positions, a batch of rows) come from the heap, and a heap fragmented by small objects keeps their
pages after they are freed. Fixing the threshold, as ``MALLOC_MMAP_THRESHOLD_`` would, maps every block
above it on its own and unmaps it on free. Training 1.26M samples peaked at 733 MB without it, 634 MB with.

Arrow (every Parquet read) allocates from its own pool, mimalloc by default in pyarrow's wheels, which
keeps freed pages for Arrow's next allocation: reading a 5M-row dataset's parts one at a time and dropping
each left 430 MB resident for good. jemalloc, Arrow's other bundled pool, returns them within a second of
going unused (its decay), at mimalloc's speed; the system allocator returns them at once but read the parts
half as fast (an mmap per buffer).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 64 << 10


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold and move Arrow to a pool that returns freed pages; False where the C
    library is not glibc (the threshold is left alone)."""
    _arrow_pool_that_returns_memory()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1)


def _arrow_pool_that_returns_memory() -> None:
    import pyarrow as pa

    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc
        pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)
