"""Calls to a store that return or fail within a deadline, naming the store: serving never hangs on a silent one.

A store that accepts connections and never answers would block a read forever (Feast's Redis client has no
socket timeout; psycopg waits for a query as long as the server does). Each call runs on a daemon thread that
the caller waits for at most ``seconds``; a late thread finishes (or dies with its socket) on its own and never
keeps the process alive. Calls to one store are serialised by its lock, as they were on a single event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from training.errors import ServiceUnavailable

T = TypeVar("T")


class StoreUnavailable(ServiceUnavailable):
    """A store failed a bounded call; ``service`` names it for the 503 body."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(message)
        self.service = service


class ServiceTimeout(StoreUnavailable):
    """A store did not answer within the configured timeout."""


class StoreDown(StoreUnavailable):
    """A store refused or dropped the connection."""


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the store is not answering", from whichever client raised them."""
    import sqlite3

    import psycopg
    import redis

    return (redis.ConnectionError, redis.TimeoutError, psycopg.OperationalError, sqlite3.OperationalError, OSError)


class Store:
    """One store (its name, where it is, the setting to fix) and a deadline for every call to it."""

    def __init__(self, service: str, where: str, setting: str, seconds: float) -> None:
        self.service, self.where, self.setting, self.seconds = service, where, setting, seconds
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)``, or ServiceTimeout / StoreDown naming the store within ``seconds``."""
        outcome: list[tuple[bool, object]] = []

        def run() -> None:
            if not self._lock.acquire(timeout=self.seconds):
                return  # an earlier call is still stuck on this store: the caller has given up already
            try:
                outcome.append((True, fn(*args)))
            except BaseException as exc:  # handed to the caller, who re-raises it
                outcome.append((False, exc))
            finally:
                self._lock.release()

        worker = threading.Thread(target=run, name=f"{self.service} call", daemon=True)
        worker.start()
        worker.join(self.seconds)
        if not outcome:
            raise ServiceTimeout(
                self.service,
                f"{self.where} did not answer within {self.seconds:g} s (check {self.setting}; "
                "OHLCV_SERVICE_TIMEOUT sets the limit)",
            )
        ok, value = outcome[0]
        if ok:
            return value  # type: ignore[return-value]
        if isinstance(value, ServiceUnavailable):  # e.g. db.connect's one line naming the PG* variables
            raise StoreDown(self.service, str(value)) from None
        if isinstance(value, _connection_errors()):
            reason = " ".join(str(value).split())[:200] or type(value).__name__
            raise StoreDown(self.service, f"{self.where} unreachable: {reason} (check {self.setting})") from None
        raise value  # type: ignore[misc]
