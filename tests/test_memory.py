"""The train command fixes glibc's mmap threshold: a freed multi-megabyte array leaves the process."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import numpy as np
from training.infra.memory import return_freed_memory

def rss_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024

assert return_freed_memory() is {fixed}
big = np.ones(16 << 20, dtype=np.uint8); del big  # raises glibc's dynamic threshold to 16 MB
keep, blocks = [], []
for _ in range(100):  # 4 MB arrays interleaved with small objects that stay: a fragmented heap
    blocks.append(np.ones(4 << 20, dtype=np.uint8))
    keep.append(bytearray(2000))  # above pymalloc's 512 bytes: from glibc's heap, between the blocks
before = rss_mb()
blocks.clear()
print(before - rss_mb())
"""


def _released_mb(fixed: bool) -> float:
    code = CHILD.format(fixed=fixed)
    if not fixed:
        code = code.replace("assert return_freed_memory() is False", "")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def test_freed_arrays_go_back_to_the_os_with_the_threshold_fixed():
    assert _released_mb(True) > 350  # the 400 MB of blocks


def test_without_it_glibc_keeps_them():
    """The control: proves the test above measures the setting, not numpy."""
    assert _released_mb(False) < 100


ARROW_CHILD = """
import time
import pyarrow as pa
from training.infra.memory import return_freed_memory

def rss_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024

if {fixed}:
    return_freed_memory()
print(pa.default_memory_pool().backend_name)
# Many 1 MB Arrow buffers, as a Parquet read makes them, then all dropped.
buffers = [pa.allocate_buffer(1 << 20) for _ in range(400)]
for buffer in buffers:
    memoryview(buffer).cast("B")[::4096] = b"x" * 256  # touch every page: resident
before = rss_mb()
buffers.clear()
released = 0.0
for _ in range(50):  # jemalloc hands pages back after its decay time (about a second)
    time.sleep(0.1)
    released = max(released, before - rss_mb())
print(released)
"""


def _arrow_released(fixed: bool) -> tuple[str, float]:
    done = subprocess.run([sys.executable, "-c", ARROW_CHILD.format(fixed=fixed)], capture_output=True, text=True,
                          check=True)  # fmt: skip
    pool, released = done.stdout.split()
    return pool, float(released)


def test_arrow_buffers_go_back_to_the_os_after_the_pool_is_switched():
    pool, released = _arrow_released(True)
    assert pool == "jemalloc" and released > 350


def test_arrow_default_pool_keeps_them():
    """The control: pyarrow's default pool (mimalloc) keeps freed buffers for its next allocation."""
    pool, released = _arrow_released(False)
    assert pool != "jemalloc" and released < 100
