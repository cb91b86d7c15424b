"""Decision-time knowledge: each entity row joins the feature versions that were usable at its own timestamp.

The rule (both as-of stores, and the audit's check, use it): a feature version written at ``created`` becomes
usable ``lag`` later (the publication lag). For an entity row at ``t`` with knowledge time ``K = t - lag``,
the usable versions are those with ``created <= K`` that were not yet superseded then
(``superseded IS NULL OR K < superseded``; a source without a superseded column has current rows only).
Among them the join is the usual as-of: the newest ``event_timestamp <= t`` within the TTL, and of that
event the newest ``created`` (the version known at ``K``). With ``lag`` 0 and current rows this is Feast's
``filter_by_created_timestamp=True``.

Both stores compute it in one pass: ordered by the time each version becomes usable,
``u = max(event_timestamp, created + lag)``, the running maximum of ``(event_timestamp, created)`` at ``t``
is the answer among versions ever usable by then. It is wrong only when that version had already been
superseded at ``K`` without a successor (a removed row, e.g. a re-stamped bar): those rows, and only
those, are answered by a direct search among the versions alive at ``K``.

A build asks for it through Feast's own flag (``filter_by_created_timestamp=True``); the lag travels in
:func:`deciding`, as the knowledge time of ``--known-at`` travels in :func:`training.infra.versions.knowing`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta

import numpy as np

_LAG: ContextVar[timedelta] = ContextVar("publication_lag", default=timedelta(0))
NEVER = np.iinfo(np.int64).max  # "not superseded" in microseconds


@contextmanager
def deciding(lag: timedelta) -> Iterator[None]:
    """Within the block, a retrieval with ``filter_by_created_timestamp`` uses publication lag ``lag``."""
    if lag < timedelta(0):
        raise ValueError("a publication lag cannot be negative (it would let a row see versions written after it)")
    token = _LAG.set(lag)
    try:
        yield
    finally:
        _LAG.reset(token)


def publication_lag() -> timedelta:
    """The lag of the enclosing :func:`deciding` block (0 outside one: Feast's own rule)."""
    return _LAG.get()


def match(
    at: np.ndarray,
    event: np.ndarray,
    created: np.ndarray,
    superseded: np.ndarray | None,
    ttl_us: int | None,
    lag_us: int,
) -> np.ndarray:
    """For each entity time ``at`` (int64 microseconds, one key's rows), the index of the version it joins
    among ``event``/``created``/``superseded`` (int64 microseconds, valid rows only; superseded ``NEVER``
    when current), or -1 for none. Ties on (event, created) go to the later index."""
    if len(event) == 0:
        return np.full(len(at), -1, dtype=np.int64)
    usable = np.maximum(event, created + lag_us)
    by_rank = np.lexsort((np.arange(len(event)), created, event))  # ascending (event, created, index)
    rank = np.empty(len(event), dtype=np.int64)
    rank[by_rank] = np.arange(len(event))
    by_usable = np.argsort(usable, kind="stable")
    best_rank = np.maximum.accumulate(rank[by_usable])
    position = np.searchsorted(usable[by_usable], at, side="right") - 1
    found = position >= 0
    chosen = np.where(found, by_rank[best_rank[np.clip(position, 0, None)]], -1)
    known = at - lag_us
    if superseded is not None:
        gone = np.flatnonzero(found & (superseded[np.clip(chosen, 0, None)] <= known))
        for row in gone:  # a version removed before K: the newest alive one, searched directly
            alive = (event <= at[row]) & (created <= known[row]) & (superseded > known[row])
            candidates = np.flatnonzero(alive)
            chosen[row] = (
                candidates[np.lexsort((candidates, created[candidates], event[candidates]))[-1]]
                if len(candidates)
                else -1
            )
    if ttl_us is not None:
        chosen = np.where((chosen >= 0) & (event[np.clip(chosen, 0, None)] >= at - ttl_us), chosen, -1)
    return chosen
