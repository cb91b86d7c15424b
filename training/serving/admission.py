"""A bounded request queue in front of the scorer: ``workers`` requests run at once, ``queue`` more wait, and any
beyond that is answered 503 "busy" at once instead of waiting behind them.

The workers are the only threads that call the stores for /predict, so the stores see at most ``workers``
calls at a time (Redis's connection pool and PostgreSQL's connections stay that small), and a store's timeout
starts when a worker calls it, never while a request waits its turn.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from training.errors import ServiceUnavailable

T = TypeVar("T")

DEFAULT_WORKERS = 4
DEFAULT_QUEUE = 100


class Busy(ServiceUnavailable):
    """Every worker is busy and the queue is full: answered at once, the client may retry."""

    service = "serve"


class Admission:
    """Run blocking calls on ``workers`` threads with at most ``queue`` waiting; Busy beyond that."""

    def __init__(self, workers: int = DEFAULT_WORKERS, queue: int = DEFAULT_QUEUE) -> None:
        if workers < 1 or queue < 0:
            raise ValueError(f"workers must be >= 1 and queue >= 0, got {workers} and {queue}")
        self.workers, self.queue = workers, queue
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="predict")
        self._lock = threading.Lock()
        self._admitted = 0  # running or waiting; released when the call ends or is cancelled before it runs

    @property
    def admitted(self) -> int:
        return self._admitted

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """``fn(*args)`` on a worker, or Busy at once when ``workers + queue`` calls are admitted already."""
        with self._lock:
            if self._admitted >= self.workers + self.queue:
                raise Busy(
                    f"busy: {self.workers} request(s) running and {self.queue} waiting; try again shortly "
                    "(serve --workers and --queue set the limits)"
                )
            self._admitted += 1
        future = self._pool.submit(functools.partial(fn, *args))
        future.add_done_callback(self._release)
        return future

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """:meth:`submit`, awaited without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def _release(self, _: Future) -> None:
        with self._lock:
            self._admitted -= 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
