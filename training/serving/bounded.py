"""Calls to a store that return or fail within a deadline, naming the store: serving never hangs on a silent one.

The deadline measures the store, never a queue in front of it: calls are not serialised (the caller bounds how
many run at once, :mod:`training.serving.admission`), and the clock starts when the call does. Two kinds of store:

- one whose client bounds every socket operation itself (Redis with socket timeouts and no retries): the call
  runs on the caller's thread and the client's timeout is the deadline, so time spent waiting for the GIL
  under load (decoding a large answer while other requests run) is never blamed on the store;
- any other (psycopg waits for a query as long as the server does): the call runs on a daemon thread that the
  caller waits for at most ``seconds``; a late thread finishes (or dies with its socket) on its own.

A store found silent stays suspect until it answers again: meanwhile calls fail at once with the same 503 and
a background thread retries a cheap probe, so a burst of requests on a silent store never queues up timeouts
one after another. A readiness check (``/ready``) always tries the store itself, so it sees the store recover
at once.
"""

from __future__ import annotations

import threading
import time
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


def _timeout_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the store did not answer in time", from a client that bounds its own sockets."""
    import redis

    return (redis.TimeoutError, TimeoutError)


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the store is not answering", from whichever client raised them."""
    import sqlite3

    import psycopg
    import redis

    return (redis.ConnectionError, redis.TimeoutError, psycopg.OperationalError, sqlite3.OperationalError, OSError)


class Store:
    """One store (its name, where it is, the setting to fix) and a deadline for every call to it.

    ``self_bounded``: the store's client times out every socket operation after ``seconds`` and never retries,
    so the call needs no thread of its own. ``probe``: a cheap call to the store; once set, a store that timed
    out is suspect: calls fail at once while a background thread retries ``probe`` until the store answers.
    """

    def __init__(
        self,
        service: str,
        where: str,
        setting: str,
        seconds: float,
        self_bounded: bool = False,
        probe: Callable[[], object] | None = None,
    ) -> None:
        self.service, self.where, self.setting, self.seconds = service, where, setting, seconds
        self.self_bounded, self.probe = self_bounded, probe
        self._state = threading.Lock()
        self._silent_since: float | None = None  # monotonic time the store was found silent; None: trusted
        self._prober: threading.Thread | None = None

    @property
    def suspect(self) -> bool:
        return self._silent_since is not None

    def call(self, fn: Callable[..., T], *args: object, probe: bool = False) -> T:
        """``fn(*args)``, or ServiceTimeout / StoreDown naming the store within ``seconds`` of the call's start.

        ``probe``: try the store even while it is suspect (readiness checks); an answer makes it trusted again.
        """
        if not probe:
            self.refuse_if_suspect()
        return self._settled(lambda: self._bounded(fn, *args))

    def start(self, fn: Callable[..., T], *args: object) -> Callable[[], T]:
        """:meth:`call` begun on a thread of its own; the returned function waits for its outcome, still within
        ``seconds`` of this start. Lets a caller wait on another store meanwhile instead of one after the other."""
        self.refuse_if_suspect()
        outcome = self._begin(fn, *args)
        return lambda: self._settled(outcome)

    def _settled(self, attempt: Callable[[], T]) -> T:
        """``attempt()``, noting whether the store answered (trusted) or stayed silent (suspect)."""
        try:
            value = attempt()
        except ServiceTimeout:
            self._found_silent()
            raise
        except StoreDown:
            raise
        except BaseException:
            self._answered()  # the store answered; the call itself failed
            raise
        self._answered()
        return value

    def refuse_if_suspect(self) -> None:
        """ServiceTimeout at once while the store is suspect: a request checks before doing any work."""
        since = self._silent_since
        if since is not None:
            ago = time.monotonic() - since
            raise self._timeout(f"; it stopped answering {ago:.1f} s ago and is tried again in the background")

    def _found_silent(self) -> None:
        if self.probe is None:
            return  # nothing to retry with: every call tries the store itself
        with self._state:
            if self._silent_since is None:
                self._silent_since = time.monotonic()
            if self._prober is None or not self._prober.is_alive():
                self._prober = threading.Thread(target=self._probe_until_answered, name=f"{self.service} probe")
                self._prober.daemon = True
                self._prober.start()

    def _probe_until_answered(self) -> None:
        assert self.probe is not None
        while self._silent_since is not None:
            try:
                self._bounded(self.probe)
            except StoreUnavailable:
                time.sleep(min(1.0, self.seconds / 2))  # a refusing store answers at once: do not spin
                continue
            except BaseException:  # an answer, even an error, means the store is back
                pass
            self._answered()

    def _answered(self) -> None:
        with self._state:
            self._silent_since = None

    def _timeout(self, detail: str = "") -> ServiceTimeout:
        return ServiceTimeout(
            self.service,
            f"{self.where} did not answer within {self.seconds:g} s (check {self.setting}; "
            f"OHLCV_SERVICE_TIMEOUT sets the limit{detail})",
        )

    def _bounded(self, fn: Callable[..., T], *args: object) -> T:
        if self.self_bounded:
            try:
                return fn(*args)
            except BaseException as exc:
                raise self._translated(exc) from None
        return self._begin(fn, *args)()

    def _begin(self, fn: Callable[..., T], *args: object) -> Callable[[], T]:
        """Run ``fn(*args)`` on a daemon thread now; the returned function waits for it until ``seconds`` after
        now (a self-bounded store's client times out by itself), then returns its value or raises its failure."""
        deadline = time.monotonic() + self.seconds
        outcome: list[tuple[bool, object]] = []

        def run() -> None:
            try:
                outcome.append((True, fn(*args)))
            except BaseException as exc:  # handed to the caller, who re-raises it
                outcome.append((False, exc))

        worker = threading.Thread(target=run, name=f"{self.service} call", daemon=True)
        worker.start()

        def wait() -> T:
            worker.join(None if self.self_bounded else max(0.0, deadline - time.monotonic()))
            if not outcome:
                raise self._timeout()
            ok, value = outcome[0]
            if ok:
                return value  # type: ignore[return-value]
            raise self._translated(value)  # type: ignore[arg-type]

        return wait

    def _translated(self, exc: BaseException) -> BaseException:
        """The store's failure as StoreDown / ServiceTimeout naming it; any other exception as it is."""
        if isinstance(exc, ServiceUnavailable):  # e.g. db.connect's one line naming the PG* variables
            return StoreDown(self.service, str(exc))
        if isinstance(exc, _timeout_errors()):
            return self._timeout()
        if isinstance(exc, _connection_errors()):
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            return StoreDown(self.service, f"{self.where} unreachable: {reason} (check {self.setting})")
        return exc
