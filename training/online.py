"""The online side: materialization windows judged against the offline store, never the wall clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from training import db, settings
from training.errors import InputError
from training.schema import FEATURES_TABLE


@dataclass(frozen=True)
class MaterializeWindow:
    start: datetime
    end: datetime
    views: list[str]
    online_store: str


def offline_time_range() -> tuple[datetime, datetime]:
    """Oldest and newest bar in the feature table, or a clear error when there is nothing to serve."""
    with db.connect() as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (FEATURES_TABLE,)).fetchone()[0]
        row = (
            conn.execute(f"SELECT min(event_timestamp), max(event_timestamp) FROM {FEATURES_TABLE}").fetchone()
            if exists
            else None
        )
    if not row or row[0] is None:
        raise InputError(f"{FEATURES_TABLE} is empty: run `python -m training compute-features` first")
    return row[0], row[1]


def materialize_latest(views: list[str] | None = None) -> MaterializeWindow:
    """Materialize [oldest bar, newest bar] so Feast writes each symbol's newest row to the online store."""
    from training.feast_store import feature_store

    store = feature_store()
    start, newest = offline_time_range()
    end = newest + timedelta(microseconds=1)
    known = [v.name for v in store.list_feature_views()]
    selected = views or known
    unknown = sorted(set(selected) - set(known))
    if unknown:
        raise InputError(f"unknown feature view(s): {', '.join(unknown)}; known: {', '.join(known)} (run feast apply?)")
    store.materialize(start_date=start, end_date=end, feature_views=selected)
    return MaterializeWindow(start, end, selected, settings.online_store_config()["type"])
