"""Materialization that scales with symbols, not history, against real PostgreSQL and the real online store.

(a) the offline store's latest-row pull equals Feast's stock pull (the parent class's method) on the same
data: ties on the event time broken by the created timestamp, both window ends included, NULL keys, with
the skip scan (a table big enough for PostgreSQL to probe its index) and with DISTINCT ON (a tiny table);
(b) after new bars for some symbols, `materialize` and Feast's materialize-incremental write only those
symbols; (c) a second run with nothing new writes nothing. Writes are counted by wrapping the online store's
``online_write_batch`` (the services are real).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from feast import RepoConfig
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import PostgreSQLOfflineStore
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.infra.online_stores.sqlite import SqliteOnlineStore

from tests.conftest import SESSION, run_cli, run_module, scratch_repo_config
from training.feast_store.offline_store import AsOfPostgreSQLOfflineStore
from training.infra import db

T0 = datetime(2020, 1, 1, 21, tzinfo=UTC)


def _config(tmp_path) -> RepoConfig:
    return scratch_repo_config(tmp_path, "latest_pull")


@pytest.fixture(scope="module")
def latest_tables(isolated_services):
    """latest_pull.big (300 symbols x 400 days, indexed on (symbol, event_timestamp)) and latest_pull.tiny.

    Both hold ties on the newest event time (broken by ``created``), rows with a NULL symbol and a symbol
    whose data stops early.
    """
    with db.connect(autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS latest_pull CASCADE")
        conn.execute("CREATE SCHEMA latest_pull")
        for table in ("big", "tiny"):
            symbols, days = (300, 400) if table == "big" else (4, 6)
            conn.execute(
                f"CREATE TABLE latest_pull.{table} (symbol text, event_timestamp timestamptz NOT NULL, "
                "created timestamptz NOT NULL, v float8, w float8)"
            )
            conn.execute(
                f"INSERT INTO latest_pull.{table} "
                "SELECT 'S' || lpad(s::text, 4, '0'), %(t0)s::timestamptz + d * interval '1 day', "
                "%(t0)s::timestamptz + d * interval '1 day' + interval '1 hour', s * 1000 + d, random() "
                "FROM generate_series(1, %(symbols)s) s, generate_series(0, %(days)s - 1) d "
                "WHERE s %% 7 <> 3 OR d < %(days)s / 2",  # every 7th symbol stops half way
                {"t0": T0, "symbols": symbols, "days": days},
            )
            # Ties: a second version of some symbols' newest and of a mid-history bar, created later or earlier.
            conn.execute(
                f"INSERT INTO latest_pull.{table} SELECT symbol, event_timestamp, created + "
                "CASE WHEN right(symbol, 1) IN ('1', '2') THEN interval '1 minute' ELSE - interval '1 minute' END, "
                f"-v, w FROM latest_pull.{table} WHERE right(symbol, 1) IN ('1', '2', '4') "
                "AND event_timestamp IN (%(t0)s::timestamptz + interval '2 days', "
                f"(SELECT max(event_timestamp) FROM latest_pull.{table}))",
                {"t0": T0},
            )
            conn.execute(
                f"INSERT INTO latest_pull.{table} VALUES (NULL, %(t)s, %(t)s, 1, 1), (NULL, %(t)s, %(u)s, 2, 2), "
                "(NULL, %(s)s, %(s)s, 3, 3)",
                {"t": T0 + timedelta(days=2), "u": T0 + timedelta(days=2, hours=2), "s": T0 + timedelta(days=1)},
            )
            conn.execute(f"CREATE INDEX ON latest_pull.{table} (symbol, event_timestamp)")
            conn.execute(f"ANALYZE latest_pull.{table}")
    yield
    with db.connect(autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS latest_pull CASCADE")


def _pull(store, config: RepoConfig, source: PostgreSQLSource, start: datetime, end: datetime):
    return store.pull_latest_from_table_or_query(
        config, source, ["symbol"], ["v", "w"], "event_timestamp", "created", start, end
    )


def _frame(table) -> pd.DataFrame:
    return table.to_pandas().sort_values("symbol", na_position="last").reset_index(drop=True)


WINDOWS = [
    (T0 - timedelta(days=1), T0 + timedelta(days=1000)),  # everything
    (T0 + timedelta(days=2), T0 + timedelta(days=2)),  # one instant: both ends included, as BETWEEN
    (T0 + timedelta(days=1), T0 + timedelta(days=2)),  # a row exactly at each edge
    (T0 + timedelta(days=1, seconds=1), T0 + timedelta(days=2, seconds=-1)),  # edges just inside: nothing
    (T0 + timedelta(days=150), T0 + timedelta(days=5000)),  # the early stoppers are absent
]


@pytest.mark.parametrize("table, form", [("big", "WITH RECURSIVE"), ("tiny", "DISTINCT ON")])
@pytest.mark.parametrize("as_query", [False, True], ids=["table", "query"])
@pytest.mark.parametrize("window", WINDOWS, ids=[f"w{i}" for i in range(len(WINDOWS))])
def test_latest_pull_equals_feasts_stock_pull(latest_tables, tmp_path, table, form, as_query, window):
    config = _config(tmp_path)
    name = f"latest_pull.{table}"
    where = {"query": f"SELECT * FROM {name}"} if as_query else {"table": name}
    source = PostgreSQLSource(name=f"{table}_source", timestamp_field="event_timestamp",
                              created_timestamp_column="created", **where)  # fmt: skip
    job = _pull(AsOfPostgreSQLOfflineStore, config, source, *window)
    assert form in job.to_sql()
    ours, stock = job.to_arrow(), _pull(PostgreSQLOfflineStore, config, source, *window).to_arrow()
    assert ours.schema == stock.schema
    pd.testing.assert_frame_equal(_frame(ours), _frame(stock))
    if window == WINDOWS[0]:  # the tie-break, spelt out: the later created version wins
        frame = _frame(ours).set_index("symbol", drop=False)
        newest = frame["event_timestamp"].max()
        assert frame.loc["S0001", "v"] < 0 and frame.loc["S0004", "v"] > 0
        assert frame.loc["S0001", "event_timestamp"] == newest
        assert frame["symbol"].isna().sum() == 1 and frame["v"].iloc[-1] == 2


# --- materialize writes only what changed ------------------------------------------------------------------

PROJECT = f"{SESSION}_matscale"


@pytest.fixture
def writes(monkeypatch) -> Counter:
    """(view, symbol) -> rows written to the online store, counted at its ``online_write_batch``."""
    counted: Counter = Counter()
    for cls in (RedisOnlineStore, SqliteOnlineStore):
        original = cls.online_write_batch

        def counting(self, config, table, data, progress, _original=original):
            for entity_key, *_ in data:
                counted[(table.name, entity_key.entity_values[0].string_val)] += 1
            return _original(self, config, table, data, progress)

        monkeypatch.setattr(cls, "online_write_batch", counting)
    return counted


def _symbols(counted: Counter) -> set[str]:
    return {symbol for _, symbol in counted}


def _ingest(frame: pd.DataFrame, write_csv) -> None:
    for args in (("ingest", str(write_csv(frame))), ("compute-features",)):
        result = run_cli(*args)
        assert result.exit_code == 0, result.output


def _online(store, symbols: list[str]) -> dict:
    refs = [f"{v.name}:{f.name}" for v in store.list_feature_views() for f in v.features]
    return store.get_online_features(features=refs, entity_rows=[{"symbol": s} for s in symbols]).to_dict()


def test_materialize_writes_only_symbols_with_new_bars(empty_store, bundled_raw, write_csv, writes, monkeypatch):
    monkeypatch.setenv("FEAST_PROJECT", PROJECT)
    dates = sorted(bundled_raw["Date"].unique())
    d1, d2, d3 = dates[-3:]
    _ingest(bundled_raw[bundled_raw["Date"] < d1], write_csv)
    run_module("feast", "apply")
    from training.feast_store.repository import feature_store

    store = feature_store()
    try:
        symbols = sorted(bundled_raw["Ticker"].unique())
        views = sorted(v.name for v in store.list_feature_views())
        result = run_cli("materialize")
        assert result.exit_code == 0, result.output
        assert set(writes) == {(v, s) for v in views for s in symbols}  # the first run writes everything

        writes.clear()
        result = run_cli("materialize")  # (c) nothing new: nothing written
        assert result.exit_code == 0, result.output
        assert "nothing to write" in result.output and not writes

        # (b) a new bar for two symbols: only they are written, the others' online rows stay as they were
        new = ["AAPL", "MSFT"]
        before = _online(store, symbols)
        _ingest(bundled_raw[bundled_raw["Ticker"].isin(new) & (bundled_raw["Date"] == d1)], write_csv)
        result = run_cli("materialize")
        assert result.exit_code == 0, result.output
        assert set(writes) == {(v, s) for v in views for s in new} and set(writes.values()) == {1}
        after = _online(store, symbols)
        for row, symbol in enumerate(symbols):
            same = all(after[k][row] == before[k][row] or after[k][row] != after[k][row] for k in after)
            assert same == (symbol not in new), symbol
        assert run_cli("check-online").exit_code == 0

        # Feast's own materialize-incremental, from the end of the last window: the symbols with bars after it
        writes.clear()
        later = ["GOOG", "IBM"]
        _ingest(bundled_raw[bundled_raw["Ticker"].isin(later) & bundled_raw["Date"].isin([d1, d2])], write_csv)
        end = datetime.fromisoformat(d3).replace(tzinfo=UTC)
        feature_store().materialize_incremental(end_date=end)
        assert _symbols(writes) == set(later)
        writes.clear()
        feature_store().materialize_incremental(end_date=end)  # (c) again: nothing new, nothing written
        assert not writes
        result = run_cli("materialize")  # our command agrees the online store is current
        assert "nothing to write" in result.output and not writes
        assert run_cli("check-online").exit_code == 0

        # A bar corrected in place (same event time, new values) reaches the online store through every view: its
        # row's version changed, and views holding two versions of one bar are refused; FB's bar is older than
        # the others' newest, so the window rewrites theirs too
        with db.connect(autocommit=True) as conn:
            conn.execute(
                "UPDATE features.technical_indicators SET close = close + 1, created_timestamp = now() "
                "WHERE symbol = 'FB' AND event_timestamp = (SELECT max(event_timestamp) "
                "FROM features.technical_indicators WHERE symbol = 'FB')"
            )
        result = run_cli("materialize")
        assert result.exit_code == 0, result.output
        assert _symbols(writes) == {"FB", *new, *later} and {v for v, _ in writes} == set(views)
        assert run_cli("check-online").exit_code == 0
    finally:
        store = feature_store()
        store._get_provider().teardown_infra(PROJECT, store.list_feature_views(), store.list_entities())
