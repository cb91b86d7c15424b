"""Where a command's wall time goes: seconds per named stage, written to a file the scale benchmark reads.

``with stage("labels"): ...`` adds the block's wall time to the total of its *path*: a stage entered inside
another is ``"outer/inner"`` (verify-leakage's rebuild shows the build's own stages under it). Totals are kept
in the process and, when ``OHLCV_STAGE_TIMES`` names a file, written there as JSON when the process exits
(``make bench-scale`` sets it per step). Two clock reads per stage and no sampling: cheap enough to stay on
the paths it measures, which is why it is a timer and not a profiler.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "OHLCV_STAGE_TIMES"
_totals: dict[str, float] = {}
_calls: dict[str, int] = {}
_local = threading.local()  # each thread's stack of open stages


def _stack() -> list[str]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block under ``name`` (nested in the stages already open in this thread)."""
    stack = _stack()
    stack.append(name)
    path = "/".join(stack)
    started = time.perf_counter()
    try:
        yield
    finally:
        add(path, time.perf_counter() - started, nested=False)
        stack.pop()


def add(name: str, seconds: float, nested: bool = True) -> None:
    """Seconds measured elsewhere (e.g. a check's own timing), under ``name`` inside the open stages."""
    path = "/".join([*_stack(), name]) if nested else name
    _totals[path] = _totals.get(path, 0.0) + seconds
    _calls[path] = _calls.get(path, 0) + 1


def totals() -> dict[str, dict[str, float]]:
    """Every stage path measured so far: its seconds and how many times it ran; a stage before the stages inside
    it, siblings in the order they first finished."""
    finished = {path: index for index, path in enumerate(_totals)}
    parts = {path: path.split("/") for path in _totals}

    def key(path: str) -> tuple[int, ...]:
        names = parts[path]
        return tuple(finished.get("/".join(names[: i + 1]), len(finished)) for i in range(len(names)))

    return {path: {"seconds": round(_totals[path], 4), "calls": _calls[path]} for path in sorted(_totals, key=key)}


def reset() -> None:
    _totals.clear()
    _calls.clear()


def write(path: Path) -> None:
    path.write_text(json.dumps(totals(), indent=1) + "\n")


@atexit.register
def _write_on_exit() -> None:
    target = os.environ.get(ENV)
    if target and _totals:
        # A benchmark's bookkeeping must never turn a finished command into a failed one.
        with contextlib.suppress(OSError):
            write(Path(target))
