"""The sort-merge offline store returns exactly what Feast's stock PostgreSQL store returns.

Differential: random entity frames go through (a) AsOfPostgreSQLOfflineStore, (b) Feast's stock store and
(c) a pandas.merge_asof reference, against the session's real PostgreSQL, and the frames must be identical
(columns, dtypes, values, NaN positions) once sorted by the entity's row id. The feature tables have no
primary key, so equal event timestamps with different created timestamps (and NULL created timestamps,
which the stock store never matches) are exercised; views differ in TTL, created column, field mapping,
join keys and source kind (query or table); two on-demand views (python and pandas mode) ride along.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field
from feast.data_source import DataSource
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import PostgreSQLRetrievalJob
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
    PostgreSQLSource,
    SavedDatasetPostgreSQLStorage,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, UnixTimestamp
from feast.value_type import ValueType

from tests.conftest import scratch_repo_config
from training.feast_store import offline_store, retrieval
from training.feast_store.offline_store import CLASS_PATH, AsOfPostgreSQLOfflineStoreConfig, AsOfRetrievalJob
from training.feast_store.plan import RetrievalPlan, Supported, Unsupported
from training.feast_store.retrieval import HistoricalRequest
from training.infra import db, settings

SYMBOLS = [f"S{i}" for i in range(5)]
FIRST_BAR = pd.Timestamp("2021-03-01 21:00", tz="UTC")
BARS = 40
TTL_A = timedelta(days=3)
TTL_D = timedelta(days=1)

symbol = Entity(name="symbol", join_keys=["symbol"], value_type=ValueType.STRING)
venue = Entity(name="venue", join_keys=["venue"], value_type=ValueType.STRING)
bars_source = PostgreSQLSource(
    name="bars_source",
    query="SELECT *, event_timestamp AS bar_timestamp FROM pit.bars",
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
)
other_source = PostgreSQLSource(
    name="other_source",
    table="pit.other",
    timestamp_field="ts",
    field_mapping={"ticker": "symbol", "raw_x": "x"},
)
venue_source = PostgreSQLSource(
    name="venue_source", table="pit.venue_bars", timestamp_field="event_timestamp", created_timestamp_column="created"
)


def definitions(bars_source: DataSource, other_source: DataSource, venue_source: DataSource) -> list[Any]:
    """These tests' entities, views and on-demand views over the given sources (PostgreSQL's here, Spark's in
    tests/test_spark_offline_store.py): both stores answer the same requests."""
    fv_a = FeatureView(
        name="fv_a",
        entities=[symbol],
        ttl=TTL_A,
        schema=[
            Field(name="f_a", dtype=Float64),
            Field(name="f_b", dtype=Float64),
            Field(name="bar_timestamp", dtype=UnixTimestamp),
        ],
        source=bars_source,
    )
    fv_b = FeatureView(
        name="fv_b", entities=[symbol], ttl=TTL_A, schema=[Field(name="f_c", dtype=Float64)], source=bars_source
    )
    fv_c = FeatureView(
        name="fv_c", entities=[symbol], ttl=None, schema=[Field(name="x", dtype=Float64)], source=other_source
    )
    fv_d = FeatureView(
        name="fv_d", entities=[symbol], ttl=TTL_D, schema=[Field(name="f_d", dtype=Float64)], source=bars_source
    )
    fv_v = FeatureView(
        name="fv_v", entities=[symbol, venue], ttl=TTL_A, schema=[Field(name="v", dtype=Float64)], source=venue_source
    )

    @on_demand_feature_view(sources=[fv_a], schema=[Field(name="a_plus_b", dtype=Float64)], mode="python")
    def odfv_python(inputs: dict[str, Any]) -> dict[str, Any]:
        a = np.asarray(inputs["f_a"], dtype=np.float64)
        b = np.asarray(inputs["f_b"], dtype=np.float64)
        return {"a_plus_b": (a + b).tolist()}

    @on_demand_feature_view(sources=[fv_b], schema=[Field(name="c_twice", dtype=Float64)], mode="pandas")
    def odfv_pandas(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"c_twice": frame["f_c"] * 2.0})

    views = [fv_a, fv_b, fv_c, fv_d, fv_v, odfv_python, odfv_pandas]
    return [symbol, venue, bars_source, other_source, venue_source, *views]


DEFINITIONS = definitions(bars_source, other_source, venue_source)
FEATURES = [
    "fv_a:f_a",
    "fv_a:f_b",
    "fv_a:bar_timestamp",
    "fv_b:f_c",
    "fv_c:x",
    "fv_d:f_d",
    "fv_v:v",
    "odfv_python:a_plus_b",
    "odfv_pandas:c_twice",
]
# (view, source frame name, {entity column: source column}, ts column, created column, ttl, {source: feature})
VIEWS = [
    (
        "fv_a",
        "bars",
        {"symbol": "symbol"},
        "event_timestamp",
        "created_timestamp",
        TTL_A,
        {"f_a": "f_a", "f_b": "f_b", "bar_timestamp": "bar_timestamp"},
    ),
    ("fv_b", "bars", {"symbol": "symbol"}, "event_timestamp", "created_timestamp", TTL_A, {"f_c": "f_c"}),
    ("fv_c", "other", {"symbol": "ticker"}, "ts", None, None, {"raw_x": "x"}),
    ("fv_d", "bars", {"symbol": "symbol"}, "event_timestamp", "created_timestamp", TTL_D, {"f_d": "f_d"}),
    ("fv_v", "venue_bars", {"symbol": "symbol", "venue": "venue"}, "event_timestamp", "created", TTL_A, {"v": "v"}),
]


def _bar_times(rng: np.random.Generator) -> pd.DatetimeIndex:
    """Weekday closes with a few missing bars (gaps longer than a TTL)."""
    days = pd.bdate_range(FIRST_BAR.normalize(), periods=BARS, tz="UTC") + pd.Timedelta(hours=21)
    return days[rng.random(BARS) > 0.1]


def _tables() -> dict[str, pd.DataFrame]:
    """Feature rows with duplicates on (symbol, event_timestamp), NULLs, a NaN and NULL created stamps."""
    rng = np.random.default_rng(11)
    rows = []
    for s in SYMBOLS:
        for t in _bar_times(rng):
            created = t + pd.Timedelta(minutes=int(rng.integers(1, 50)))
            rows.append((s, t, created, *rng.normal(size=4)))
            if rng.random() < 0.2:  # a recomputation: same bar, later or earlier created, other values
                shift = pd.Timedelta(minutes=int(rng.choice([-30, 30, 90])))
                rows.append((s, t, created + shift, *rng.normal(size=4)))
            if rng.random() < 0.05:  # never matched by the stock store
                rows.append((s, t + pd.Timedelta(hours=1), None, *rng.normal(size=4)))
    bars = pd.DataFrame(rows, columns=["symbol", "event_timestamp", "created_timestamp", "f_a", "f_b", "f_c", "f_d"])
    bars.loc[rng.random(len(bars)) < 0.1, "f_a"] = np.nan  # NULL in PostgreSQL
    bars.loc[rng.random(len(bars)) < 0.1, "f_c"] = np.nan
    other = pd.DataFrame(
        [(s, t + pd.Timedelta(hours=3), rng.normal()) for s in SYMBOLS[:4] for t in _bar_times(rng)[::3]],
        columns=["ticker", "ts", "raw_x"],
    )
    venue_bars = pd.DataFrame(
        [
            (s, v, t, t + pd.Timedelta(minutes=5), rng.normal())
            for s in SYMBOLS[:3]
            for v in ("XNYS", "XNAS")
            for t in _bar_times(rng)
        ],
        columns=["symbol", "venue", "event_timestamp", "created", "v"],
    )
    return {"bars": bars, "other": other, "venue_bars": venue_bars}


@pytest.fixture(scope="module")
def tables(isolated_services) -> dict[str, pd.DataFrame]:
    return write_pit_tables()


def write_pit_tables() -> dict[str, pd.DataFrame]:
    """The feature tables in the session's PostgreSQL (schema ``pit``), and as frames."""
    frames = _tables()
    with db.connect(autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS pit CASCADE")
        conn.execute("CREATE SCHEMA pit")
        conn.execute(
            "CREATE TABLE pit.bars (symbol text, event_timestamp timestamptz, created_timestamp timestamptz, "
            "f_a float8, f_b float8, f_c float8, f_d float8)"
        )
        conn.execute("CREATE TABLE pit.other (ticker text, ts timestamptz, raw_x float8)")
        conn.execute(
            "CREATE TABLE pit.venue_bars "
            "(symbol text, venue text, event_timestamp timestamptz, created timestamptz, v float8)"
        )
        bars = frames["bars"]
        db.copy_in(conn, "pit.bars", bars)
        conn.execute(  # a stored NaN, which is a value (not a NULL) for Arrow
            "UPDATE pit.bars SET f_b = 'NaN' WHERE symbol = %s AND created_timestamp = %s",
            (bars.loc[0, "symbol"], bars.loc[0, "created_timestamp"]),
        )
        db.copy_in(conn, "pit.other", frames["other"])
        db.copy_in(conn, "pit.venue_bars", frames["venue_bars"])
    frames["bars"].loc[0, "f_b"] = np.nan
    frames["bars"]["bar_timestamp"] = frames["bars"]["event_timestamp"]
    return frames


def _store(tmp_path_factory: pytest.TempPathFactory, store_type: str) -> FeatureStore:
    folder = tmp_path_factory.mktemp(store_type.rsplit(".", 1)[-1])
    config = scratch_repo_config(folder, settings.feast_project(), store_type)
    store = FeatureStore(config=config)
    store.apply(DEFINITIONS)
    return store


@pytest.fixture(scope="module")
def stores(tables, tmp_path_factory) -> tuple[FeatureStore, FeatureStore]:
    return _store(tmp_path_factory, CLASS_PATH), _store(tmp_path_factory, "postgres")


def _entity_frame(seed: int, tables: dict[str, pd.DataFrame], n: int = 240) -> pd.DataFrame:
    """Entity rows at bars, between bars, at TTL edges (both sides), before any bar, unknown keys, duplicates."""
    rng = np.random.default_rng(seed)
    bars = tables["bars"]
    anchors = bars["event_timestamp"].to_numpy()[rng.integers(0, len(bars), n)]
    offsets = rng.choice(
        [
            pd.Timedelta(0),
            pd.Timedelta(hours=5),
            pd.Timedelta(minutes=17, microseconds=3),
            TTL_A,
            TTL_A + pd.Timedelta(microseconds=1),
            TTL_D,
            TTL_D + pd.Timedelta(seconds=1),
            pd.Timedelta(days=-60),
            -pd.Timedelta(microseconds=1),
        ],
        size=n,
    )
    frame = pd.DataFrame(
        {
            "symbol": rng.choice([*SYMBOLS, "UNKNOWN"], size=n).astype(object),
            "venue": rng.choice(["XNYS", "XNAS", "XLON"], size=n).astype(object),
            "event_timestamp": pd.DatetimeIndex(anchors).tz_convert("UTC") + pd.to_timedelta(offsets),
            "row_id": np.arange(n, dtype=np.int64),
            "weight": rng.random(n),
            "note": rng.choice(["a", "b,c", 'quote"d', None], size=n).astype(object),
            "flag": rng.random(n) < 0.5,
        }
    )
    duplicates = frame.sample(20, random_state=seed)
    return pd.concat([frame, duplicates], ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _reference(entity: pd.DataFrame, tables: dict[str, pd.DataFrame], full: bool) -> pd.DataFrame:
    """pandas.merge_asof per view: newest created per bar, backward match within the TTL."""
    out = entity.copy()
    out["event_timestamp"] = _naive_us(out["event_timestamp"])
    left = entity.assign(_order=np.arange(len(entity)), _ts=entity["event_timestamp"].dt.tz_convert("UTC"))
    for view, table, keys, ts, created, ttl, features in VIEWS:
        rows = tables[table].copy()
        if created:
            rows = rows[rows[created].notna()]
            rows = rows.sort_values([*keys.values(), ts, created]).drop_duplicates([*keys.values(), ts], keep="last")
        rows = rows.rename(columns={v: k for k, v in keys.items()})
        rows = rows.rename(columns={ts: "_fts"})[[*keys, "_fts", *features]]
        rows["_fts"] = pd.to_datetime(rows["_fts"], utc=True).astype("datetime64[ns, UTC]")
        ordered = left[["_order", "_ts", *keys]].assign(_ts=left["_ts"].astype("datetime64[ns, UTC]"))
        merged = pd.merge_asof(
            ordered.sort_values("_ts"),
            rows.sort_values("_fts"),
            left_on="_ts",
            right_on="_fts",
            by=list(keys),
            tolerance=pd.Timedelta(ttl) if ttl else None,
            direction="backward",
        ).sort_values("_order")
        for source, name in features.items():
            values = merged[source]
            if source == "bar_timestamp":
                values = _naive_us(pd.to_datetime(values, utc=True))
            out[f"{view}__{name}" if full else name] = values.to_numpy()
    prefix = ("fv_a__", "fv_b__", "odfv_python__", "odfv_pandas__") if full else ("", "", "", "")
    out[f"{prefix[2]}a_plus_b"] = out[f"{prefix[0]}f_a"] + out[f"{prefix[0]}f_b"]
    out[f"{prefix[3]}c_twice"] = out[f"{prefix[1]}f_c"] * 2.0
    return out


def _naive_us(series: pd.Series) -> pd.Series:
    return series.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["row_id", "event_timestamp"], kind="stable").reset_index(drop=True)


@pytest.mark.parametrize(
    ("seed", "full_feature_names", "odfv_chunk_rows"), [(1, False, 50_000), (2, True, 37), (3, False, 37)]
)
def test_matches_stock_store_and_merge_asof(stores, tables, seed, full_feature_names, odfv_chunk_rows, monkeypatch):
    monkeypatch.setattr(offline_store, "ODFV_CHUNK_ROWS", odfv_chunk_rows)  # on-demand views applied in chunks
    fast_store, stock_store = stores
    entity = _entity_frame(seed, tables)
    fast_job = fast_store.get_historical_features(entity, FEATURES, full_feature_names=full_feature_names)
    stock_job = stock_store.get_historical_features(entity, FEATURES, full_feature_names=full_feature_names)
    assert isinstance(fast_job, AsOfRetrievalJob)
    assert type(stock_job) is PostgreSQLRetrievalJob

    fast, stock = fast_job.to_df(), stock_job.to_df()
    reference = _reference(entity, tables, full_feature_names)[list(stock.columns)]
    assert (fast["row_id"].to_numpy() == entity["row_id"].to_numpy()).all()  # entity row order is kept
    pd.testing.assert_frame_equal(_sorted(fast), _sorted(stock), check_exact=True)
    pd.testing.assert_frame_equal(_sorted(fast), _sorted(reference), check_exact=True)
    # Arrow keeps NULL and NaN apart; the stock store returns a stored NaN as a value, not a NULL.
    key = ["row_id", "event_timestamp"]
    fast_arrow = fast_job.to_arrow().sort_by([(k, "ascending") for k in key])
    stock_arrow = stock_job.to_arrow().sort_by([(k, "ascending") for k in key])
    assert fast_arrow.schema == stock_arrow.schema
    for name in fast_arrow.column_names:
        assert fast_arrow.column(name).is_null().equals(stock_arrow.column(name).is_null()), name
    # the fixture's matches are not all empty: every view finds some rows, and some rows find none
    f_a = fast["fv_a__f_a" if full_feature_names else "f_a"]
    assert 0 < f_a.notna().sum() < len(fast)


def test_sql_entity_dataframe_matches_stock_and_dataframe_path(stores, tables):
    fast_store, stock_store = stores
    entity = _entity_frame(4, tables, n=120)
    with db.connect(autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS pit.entity_rows")
        conn.execute(
            "CREATE TABLE pit.entity_rows (symbol text, venue text, event_timestamp timestamptz, row_id bigint, "
            "weight float8, note text, flag boolean, small smallint, naive timestamp)"
        )
        db.copy_in(conn, "pit.entity_rows", entity.assign(small=np.int16(7), naive=pd.Timestamp("2021-01-01 12:00")))
    query = "SELECT * FROM pit.entity_rows"
    fast_job = fast_store.get_historical_features(query, FEATURES)
    assert isinstance(fast_job, AsOfRetrievalJob)
    fast, stock = fast_job.to_df(), stock_store.get_historical_features(query, FEATURES).to_df()
    pd.testing.assert_frame_equal(_sorted(fast), _sorted(stock), check_exact=True)
    from_frame = fast_store.get_historical_features(entity, FEATURES).to_df()
    pd.testing.assert_frame_equal(
        _sorted(fast.drop(columns=["small", "naive"])), _sorted(from_frame), check_exact=True, check_dtype=False
    )


def test_entity_select_mode_embed_query_is_honoured_by_the_stock_store(stores, tables, caplog):
    """An SQL entity query under ``embed_query`` goes to the stock store, which embeds it (no entity table);
    a pandas frame still takes the sort-merge, since the mode only speaks of queries."""
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import EntitySelectMode
    from feast.repo_config import RepoConfig

    fast_store, _ = stores
    entity = _entity_frame(12, tables, n=60)
    with db.connect(autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS pit.embedded_rows")
        conn.execute(
            "CREATE TABLE pit.embedded_rows (symbol text, venue text, event_timestamp timestamptz, row_id bigint)"
        )
        db.copy_in(conn, "pit.embedded_rows", entity[["symbol", "venue", "event_timestamp", "row_id"]])
    query = "SELECT * FROM pit.embedded_rows"
    base = fast_store.config
    embed = base.offline_store.model_copy(update={"entity_select_mode": EntitySelectMode.embed_query})
    config = RepoConfig(
        project=base.project,
        provider=base.provider,
        registry=base.registry_config,
        offline_store=embed,
        online_store=base.online_config,
        entity_key_serialization_version=base.entity_key_serialization_version,
    )
    views = [fast_store.get_feature_view("fv_a")]
    request = HistoricalRequest(config, views, FEATURES[:2], query, fast_store.registry, fast_store.project)
    assert offline_store.decide(request) == Unsupported(
        "entity_select_mode embed_query (the stock store embeds the entity query)"
    )
    framed = HistoricalRequest(config, views, FEATURES[:2], entity, fast_store.registry, fast_store.project)
    assert isinstance(offline_store.decide(framed), Supported)
    with caplog.at_level(logging.INFO, logger=retrieval.__name__):
        job = offline_store.AsOfPostgreSQLOfflineStore.get_historical_features(
            config, views, FEATURES[:2], query, fast_store.registry, fast_store.project
        )
    assert type(job) is PostgreSQLRetrievalJob and "embed_query" in caplog.text
    assert query in job.to_sql()  # embedded, not uploaded
    expected = fast_store.get_historical_features(query, FEATURES[:2]).to_df()
    pd.testing.assert_frame_equal(_sorted(job.to_df()), _sorted(expected), check_exact=True)


def test_naive_and_zoned_entity_timestamps_mean_the_same_instant(stores, tables):
    fast_store, _ = stores
    entity = _entity_frame(5, tables, n=60)
    utc = fast_store.get_historical_features(entity, FEATURES).to_df()
    naive = entity.assign(event_timestamp=entity["event_timestamp"].dt.tz_localize(None))
    paris = entity.assign(event_timestamp=entity["event_timestamp"].dt.tz_convert("Europe/Paris"))
    objects = entity.copy()
    objects["event_timestamp"] = pd.Series([t.to_pydatetime() for t in entity["event_timestamp"]], dtype=object)
    assert objects["event_timestamp"].dtype == object  # as a driver's fetchall gives them
    for variant in (naive, paris, objects):
        job = fast_store.get_historical_features(variant, FEATURES)
        assert isinstance(job, AsOfRetrievalJob)
        pd.testing.assert_frame_equal(job.to_df(), utc)


@pytest.mark.parametrize("seed", [6, 13])
def test_filter_by_created_timestamp_is_answered_by_the_sort_merge_as_the_stock_store_answers(stores, tables, seed):
    """Decision-time knowledge with lag 0 on current rows is Feast's ``filter_by_created_timestamp``: the
    fixture's created stamps fall 1-140 minutes after their bars and entity rows sit at bars, 17 minutes and 5
    hours after, so versions straddle the decision times (some rows fall back to an earlier bar, some to none)."""
    fast_store, stock_store = stores
    entity = _entity_frame(seed, tables, n=200)
    job = fast_store.get_historical_features(entity, FEATURES, filter_by_created_timestamp=True)
    assert isinstance(job, AsOfRetrievalJob) and job.plan.decision_lag == timedelta(0)
    expected = stock_store.get_historical_features(entity, FEATURES, filter_by_created_timestamp=True).to_df()
    fast = job.to_df()
    pd.testing.assert_frame_equal(_sorted(fast), _sorted(expected), check_exact=True)
    plain = fast_store.get_historical_features(entity, FEATURES).to_df()
    assert not _sorted(fast)["f_a"].equals(_sorted(plain)["f_a"])  # the filter changed some rows

    categorical = entity.assign(note=entity["note"].astype("category"))
    assert type(fast_store.get_historical_features(categorical, FEATURES)) is PostgreSQLRetrievalJob


def test_to_sql_and_persist(stores, tables):
    fast_store, _ = stores
    entity = _entity_frame(7, tables, n=30)
    job = fast_store.get_historical_features(entity, ["fv_a:f_a", "fv_c:x"])
    assert "UNION ALL" in job.to_sql()
    job.persist(SavedDatasetPostgreSQLStorage(table_ref="asof_saved"), allow_overwrite=True)
    with db.connect() as conn:
        saved = conn.execute("SELECT count(*) FROM asof_saved").fetchone()[0]
    assert saved == len(entity)


def test_feature_store_yaml_selects_this_store(isolated_services):
    from feast.repo_config import load_repo_config

    config = load_repo_config(settings.FEATURE_REPO, settings.write_feast_yaml())
    assert config.offline_store.type == CLASS_PATH
    assert type(config.offline_store).__name__ == "AsOfPostgreSQLOfflineStoreConfig"


def test_to_arrow_leaves_the_job_unchanged(stores, tables, monkeypatch):
    """On-demand views are applied chunk by chunk without a side channel: the job's state is never touched."""
    monkeypatch.setattr(offline_store, "ODFV_CHUNK_ROWS", 16)
    fast_store, _ = stores
    job = fast_store.get_historical_features(_entity_frame(9, tables, n=50), FEATURES)
    assert isinstance(job, AsOfRetrievalJob)
    expected = job.to_arrow()

    def frozen(self: AsOfRetrievalJob, name: str, value: Any) -> None:
        raise AssertionError(f"to_arrow set {name} on the job")

    monkeypatch.setattr(AsOfRetrievalJob, "__setattr__", frozen)
    pd.testing.assert_frame_equal(job.to_arrow().to_pandas(), expected.to_pandas(), check_exact=True)
    pd.testing.assert_frame_equal(job.to_df(), expected.to_pandas(), check_exact=True)


def test_the_fallback_decision_is_typed_and_logged(stores, tables, caplog):
    fast_store, _ = stores
    entity = _entity_frame(8, tables, n=40)
    refs = ["fv_a:f_a", "fv_c:x"]
    views = [fast_store.get_feature_view(name) for name in ("fv_a", "fv_c")]

    def decide(frame: pd.DataFrame, **kwargs: bool) -> Supported | Unsupported:
        config, registry, project = fast_store.config, fast_store.registry, fast_store.project
        return offline_store.decide(HistoricalRequest(config, views, refs, frame, registry, project, False, **kwargs))

    supported = decide(entity)
    assert isinstance(supported, Supported) and isinstance(supported.plan, RetrievalPlan)
    assert supported.plan.outputs == ["f_a", "x"]
    assert supported.bounds == (entity["event_timestamp"].min(), entity["event_timestamp"].max())
    with pytest.raises(dataclasses.FrozenInstanceError):
        supported.plan = None  # type: ignore[misc]
    decided = decide(entity, filter_by_created_timestamp=True)
    assert isinstance(decided, Supported) and decided.plan.decision_lag == timedelta(0)
    categorical = entity.assign(note=entity["note"].astype("category"))
    unsupported = decide(categorical)
    assert isinstance(unsupported, Unsupported) and "'note'" in unsupported.reason

    with caplog.at_level(logging.INFO, logger=retrieval.__name__):
        job = fast_store.get_historical_features(categorical, refs)
    assert type(job) is PostgreSQLRetrievalJob
    assert [r.getMessage() for r in caplog.records if r.name == retrieval.__name__] == [
        f"get_historical_features handed to Feast's stock PostgreSQLOfflineStore: {unsupported.reason}"
    ]


def test_connections_follow_the_store_config(isolated_services):
    """The store connects from its own public config fields (database, schema), as Feast's stock store does."""
    pg = settings.postgres()
    fields = {"host": pg.host, "port": pg.port, "database": pg.dbname, "user": pg.user, "password": pg.password}
    for schema, search_path in (("public", "public"), ("pit", "pit,public")):
        config = AsOfPostgreSQLOfflineStoreConfig(**fields, sslmode=pg.sslmode, db_schema=schema)
        with offline_store.connect(config) as conn:
            assert conn.execute("SELECT current_database(), current_setting('search_path')").fetchone() == (
                pg.dbname,
                search_path,
            )


def _private_feast_names(path: Path) -> list[str]:
    """``_``-prefixed names this file imports from Feast or reads off a name it imported from Feast."""
    tree = ast.parse(path.read_text())
    found, feast_names = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "feast":
            parts = [*node.module.split("."), *(a.name for a in node.names)]  # type: ignore[union-attr]
            found += [f"{path}:{node.lineno} {p}" for p in parts if p.startswith("_")]
            feast_names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "feast":
                    found += [f"{path}:{node.lineno} {p}" for p in alias.name.split(".") if p.startswith("_")]
                    feast_names.add((alias.asname or alias.name).split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in feast_names:
                found.append(f"{path}:{node.lineno} {root.id}...{node.attr}")
    return found


def test_training_uses_no_private_feast_names():
    package = Path(__file__).resolve().parents[1] / "training"
    assert [hit for path in sorted(package.rglob("*.py")) for hit in _private_feast_names(path)] == []
    assert "_get_conn" not in (package / "feast_store" / "offline_store.py").read_text()
