"""Materialization that writes only what changed: each symbol's newest offline row against what the online store
serves, value by value (the logic behind `materialize` and `update`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from feast import FeatureStore

# Wide enough for any daily bar; year 1800, not 1: Feast's Spark store writes the bounds into SQL as text without
# zero padding ("1-01-02"), which Spark cannot parse.
EVER = (datetime(1800, 1, 1, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC))


@dataclass(frozen=True)
class Materialized:
    views: list[str]  # the views written (none when the online store already held every newest row)
    symbols: list[str]  # the symbols whose newest row was missing or different online, in any selected view
    written: int  # symbols whose row Feast wrote: those, plus any other with a bar inside the window
    start: datetime | None  # the window written, [start, end)
    end: datetime | None
    online_store: str


def materialize_changed(views: list[str] | None = None, full: bool = False) -> Materialized:
    """Write the newest row of the symbols whose online row differs from it (every symbol with ``full``)."""
    from training.feast_store.repository import feature_store
    from training.infra import settings
    from training.serving.online_store import ensure_online_tables, overwriting

    store = feature_store()
    selected = _selected_views(store, views)
    ensure_online_tables(store)
    newest = newest_rows(store, selected)
    stamps = newest.column("event_timestamp").to_pylist()
    symbols = newest.column("symbol").to_pylist()
    if full:
        stale = {view: symbols for view in selected}
    else:
        stale = {view: found for view, found in changed_symbols(store, selected, newest).items() if found}
    online = settings.online_store_config()["type"]
    changed = sorted({s for found in stale.values() for s in found})
    if not changed:
        return Materialized([], [], 0, None, None, online)
    at = dict(zip(symbols, stamps, strict=True))
    start = min(at[s] for s in changed)
    end = max(stamps) + timedelta(microseconds=1)
    written = [view for view in selected if view in stale]
    with overwriting(store):  # a corrected bar keeps its event time: Redis would skip it otherwise
        store.materialize(start_date=start, end_date=end, feature_views=written)
    return Materialized(written, changed, sum(t >= start for t in stamps), start, end, online)


def _selected_views(store: FeatureStore, views: list[str] | None) -> list[str]:
    from training.errors import InputError
    from training.serving.online_store import registered_views

    known = registered_views(store)
    unknown = sorted(set(views or known) - set(known))
    if unknown:
        raise InputError(f"unknown feature view(s): {', '.join(unknown)}; known: {', '.join(known)} (run feast apply?)")
    return views or known


def newest_rows(store: FeatureStore, views: list[str]) -> pa.Table:
    """Each symbol's newest row (the views' features), by the offline store's latest-row pull, sorted by symbol.

    Exactly the rows materialization writes; an empty or missing feature table stops with the command to run.
    """
    from training.errors import InputError
    from training.serving.online_store import offline_symbols

    offline_symbols()  # an empty or missing feature table: one line naming the command to run
    feature_views = [store.get_feature_view(name) for name in views]
    sources = {view.batch_source.name: view.batch_source for view in feature_views}
    if len(sources) != 1:
        raise InputError(f"views {', '.join(views)} read {len(sources)} sources; materialize them one at a time")
    source = next(iter(sources.values()))
    features = list(dict.fromkeys(f.name for view in feature_views for f in view.features))
    table = (
        _offline_store_class(store)
        .pull_latest_from_table_or_query(
            store.config,
            source,
            ["symbol"],
            features,
            source.timestamp_field,
            source.created_timestamp_column or None,
            *EVER,
        )
        .to_arrow()
    )
    return table.sort_by("symbol")


def _offline_store_class(store: FeatureStore):
    """The project's offline store of this profile: its latest-row pull is what materialization runs."""
    from training.engines.spark.lake_offline_store import AsOfSparkOfflineStore, AsOfSparkOfflineStoreConfig
    from training.errors import InputError
    from training.feast_store.offline_store import AsOfPostgreSQLOfflineStore, AsOfPostgreSQLOfflineStoreConfig

    if isinstance(store.config.offline_store, AsOfPostgreSQLOfflineStoreConfig):
        return AsOfPostgreSQLOfflineStore
    if isinstance(store.config.offline_store, AsOfSparkOfflineStoreConfig):
        return AsOfSparkOfflineStore
    raise InputError("materialize needs one of the project's offline stores (training.feast_store)")


def changed_symbols(store: FeatureStore, views: list[str], newest: pa.Table) -> dict[str, list[str]]:
    """For each view, the symbols whose online values are not exactly their newest offline row's."""
    symbols = newest.column("symbol").to_pylist()
    features = {name: [f.name for f in store.get_feature_view(name).features] for name in views}
    refs = [f"{view}:{feature}" for view, names in features.items() for feature in names]
    served = store.get_online_features(
        features=refs, entity_rows=[{"symbol": s} for s in symbols], full_feature_names=True
    ).to_dict()
    offline: dict[str, list[Any]] = {name: newest.column(name).to_pylist() for name in newest.column_names}
    return {
        view: [
            symbol
            for row, symbol in enumerate(symbols)
            if not all(_same(served[f"{view}__{name}"][row], offline[name][row]) for name in names)
        ]
        for view, names in features.items()
    }


def _same(online: Any, offline: Any) -> bool:
    """check-online's equality; the pull's timestamps are naive UTC, the online store's aware."""
    from training.serving.online_store import same_value

    if isinstance(offline, datetime) and offline.tzinfo is None:
        offline = offline.replace(tzinfo=UTC)
    return same_value(online, offline)
