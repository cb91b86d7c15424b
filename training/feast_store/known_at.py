"""The feature source as known at a build's knowledge time: the as-of join reads the features table's versions
known then instead of its newest rows (see :mod:`training.infra.versions`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from training.errors import InputError
from training.indicators.feature_table import FEATURE_ROW_COLUMNS, FEATURES_TABLE
from training.infra.versions import SUPERSEDED, every_version_relation, has_history, known_at, relation

if TYPE_CHECKING:
    import psycopg

    from training.feast_store.plan import JoinGroup


def as_known(groups: list[JoinGroup], conn: psycopg.Connection, every_version: bool = False) -> None:
    """Within :func:`training.infra.versions.knowing`, make every group read the features table as known then;
    refuse a source that reads features some other way (its versions are not kept). ``every_version`` (a join
    by decision time): groups over the features table read all its versions (known then) with their
    ``superseded_timestamp``, so each row can take the version known at its own time; other sources keep their
    current rows (Feast's own rule)."""
    if not every_version and known_at() is None:
        return
    if every_version:
        history = has_history(conn, FEATURES_TABLE)
        versions = every_version_relation(FEATURES_TABLE, FEATURE_ROW_COLUMNS, known_at(), history)
    else:
        versions = relation(FEATURES_TABLE, FEATURE_ROW_COLUMNS, conn)
    read_as_known(groups, FEATURES_TABLE, versions, SUPERSEDED if every_version else None)


def read_as_known(groups: list[JoinGroup], table: str, versions: str, superseded: str | None = None) -> None:
    """Make every group's source read ``versions`` (the features as known at a time, in its store's SQL) where
    it read ``table`` (as the source names it: PostgreSQL's table, the lake's Parquet path); both stores'
    join. Within a build as known at a time, a source that does not read ``table`` is refused: only its versions
    are kept. ``superseded``: the versions' superseded column, for a join by decision time."""
    pattern = re.compile(rf"\bFROM\s+{re.escape(table)}(?![\w.`])", re.IGNORECASE)
    for group in groups:
        if not pattern.search(group.table_subquery):
            if known_at() is None:
                continue
            raise InputError(
                f"--known-at: the feature source {group.table_subquery[:80]!r} does not read {table}, "
                "whose versions are kept; only its views can be read as known at a time"
            )
        group.table_subquery = pattern.sub(lambda _: f"FROM {versions} AS technical_indicators", group.table_subquery)
        if superseded is not None:
            group.superseded_column = superseded


def refuse_stock_store(reason: str) -> None:
    """Feast's stock store reads the newest rows only: a build as known at a time cannot go there."""
    if known_at() is not None:
        raise InputError(f"--known-at needs the as-of store's own join, which cannot answer this request: {reason}")
