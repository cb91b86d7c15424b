"""Decision-time knowledge: each entity row joins the feature version usable at its own time (created + lag <=
t, not superseded by then), in the PostgreSQL store's SQL and in the Spark store's per-key Arrow function, equal to
a brute-force search over every version; on the real features table after a correction, rows decided before
the correction see the replaced version (from the history table), rows decided after see Feast's answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.feast_store import pit_join
from training.feast_store.decision_time import deciding
from training.feast_store.plan import JoinGroup, OutputFeature, RetrievalPlan
from training.infra import db
from training.infra.pg_io import PG_TYPES

BASE = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE_US = 60_000_000
SCHEMA = "pit_decision"
FLOAT8 = 701


def _us(minutes: int) -> int:
    return int((BASE - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000 + minutes * MINUTE_US


@st.composite
def histories(draw):
    """Versions of a few (symbol, event) keys, in minutes from BASE: chains of versions, each superseded when
    the next became known, some chains removed (superseded, no successor), some re-added after a gap."""
    rows = []
    for symbol in ("A", "B"):
        for event in sorted(draw(st.sets(st.integers(0, 20), min_size=0, max_size=6))):
            e = event * 60
            created = e + draw(st.integers(-90, 240))
            for _ in range(draw(st.integers(1, 3))):
                ends = draw(st.sampled_from(["next", "next", "removed", "gap", "current"]))
                superseded = None if ends == "current" else created + draw(st.integers(1, 200))
                rows.append((symbol, e, created, superseded, float(len(rows))))
                if superseded is None:
                    break
                created = superseded + (draw(st.integers(1, 100)) if ends == "gap" else 0)
                if ends == "removed":
                    break
    return rows


def _reference(rows, symbol: str, at: int, lag: int, ttl: int | None) -> float | None:
    """The version with the newest (event, created) among those usable at ``at``, by brute force."""
    known = at - lag
    alive = [
        r
        for r in rows
        if r[0] == symbol
        and r[1] <= at
        and r[2] <= known
        and (r[3] is None or r[3] > known)
        and (ttl is None or r[1] >= at - ttl)
    ]
    return max(alive, key=lambda r: (r[1], r[2], r[4]))[4] if alive else None


def _postgres(rows, entity: list[tuple[str, int]], lag: int, ttl: int | None) -> list[float | None]:
    """The PostgreSQL store's decision-time join (pit_sql) over a table of these versions."""
    frame = pd.DataFrame(rows, columns=["symbol", "e", "c", "s", "v"])
    stamp = lambda minutes: pd.to_datetime(minutes.map(_us), unit="us", utc=True)  # noqa: E731
    table = pd.DataFrame(
        {
            "symbol": frame["symbol"],
            "event_timestamp": stamp(frame["e"]),
            "created_timestamp": stamp(frame["c"]),
            "superseded_timestamp": stamp(frame["s"].dropna().astype(int)).reindex(frame.index),
            "v": frame["v"],
        }
    )
    with db.connect(autocommit=True) as conn:
        conn.execute(f"TRUNCATE {SCHEMA}.versions")
        if len(table):
            db.copy_in(conn, f"{SCHEMA}.versions", table)
    group = JoinGroup(
        f"{SCHEMA}.versions",
        "event_timestamp",
        "created_timestamp",
        ("symbol",),
        ("symbol",),
        None if ttl is None else timedelta(minutes=ttl),
        [OutputFeature("v", "v")],
        superseded_column="superseded_timestamp",
    )
    entity_table = pa.table(
        {
            "symbol": pa.array([s for s, _ in entity], pa.string()),
            "event_timestamp": pa.array([_us(t) for _, t in entity], pa.int64()).cast(pa.timestamp("us")),
        }
    )
    plan = RetrievalPlan(
        entity_table, [], "event_timestamp", [group], [[PG_TYPES[FLOAT8]]], ["v"], None, timedelta(minutes=lag)
    )
    with db.connect() as conn:
        return pit_join.execute(conn, plan).column("v").to_pylist()


def _kernel(rows, entity: list[tuple[str, int]], lag: int, ttl: int | None) -> list[float | None]:
    """The Spark store's per-key function (``asof_join.join_one_key``, pure Arrow: what each cogroup call runs),
    one symbol at a time, with a superseded column as a source of every version has."""
    from training.engines.spark import asof_join

    stamp = pa.timestamp("us", tz="UTC")
    out: dict[int, float | None] = {}
    for symbol in {s for s, _ in entity}:
        mine = [r for r in rows if r[0] == symbol]
        ids = [i for i, (s, _) in enumerate(entity) if s == symbol]
        features = pa.table(
            {
                asof_join.FEATURE_TS: pa.array([_us(r[1]) for r in mine], pa.int64()).cast(stamp),
                asof_join.CREATED: pa.array([_us(r[2]) for r in mine], pa.int64()).cast(stamp),
                asof_join.SUPERSEDED: pa.array([None if r[3] is None else _us(r[3]) for r in mine], pa.int64()).cast(
                    stamp
                ),
                "v": pa.array([r[4] for r in mine], pa.float64()),
            }
        )
        rows_of_key = pa.table(
            {
                asof_join.ROW_ID: pa.array(ids, pa.int64()),
                asof_join.ENTITY_TS: pa.array([_us(entity[i][1]) for i in ids], pa.int64()).cast(stamp),
            }
        )
        joined = asof_join.join_one_key(
            rows_of_key,
            features if mine else pa.table({}),
            ttl=None if ttl is None else timedelta(minutes=ttl),
            created=True,
            columns=pa.schema([("v", pa.float64())]),
            lag=timedelta(minutes=lag),
        )
        out.update(zip(joined[asof_join.ROW_ID].to_pylist(), joined["v"].to_pylist(), strict=True))
    return [out[i] for i in range(len(entity))]


@pytest.fixture(scope="module")
def versions_table(isolated_services):
    with db.connect(autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(
            f"CREATE TABLE {SCHEMA}.versions (symbol text, event_timestamp timestamptz, created_timestamp timestamptz, "
            "superseded_timestamp timestamptz, v float8)"
        )
    yield
    with db.connect(autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    rows=histories(),
    entity=st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(-100, 1700)), min_size=1, max_size=25),
    lag=st.sampled_from([0, 0, 1, 30, 125]),
    ttl=st.sampled_from([None, 60, 180]),
)
def test_a_version_created_after_decision_time_minus_lag_never_joins(versions_table, rows, entity, lag, ttl):
    expected = [_reference(rows, s, t, lag, ttl) for s, t in entity]
    joined = _postgres(rows, entity, lag, ttl)
    assert joined == expected
    assert _kernel(rows, entity, lag, ttl) == expected
    by_value = {r[4]: r for r in rows}
    for (_, at), value in zip(entity, joined, strict=True):
        if value is not None:
            version = by_value[value]
            assert version[2] + lag <= at  # known (usable) by the decision time
            assert version[3] is None or version[3] > at - lag  # and not yet replaced then


def test_the_lag_cannot_be_negative():
    with pytest.raises(ValueError, match="cannot be negative"), deciding(timedelta(seconds=-1)):
        pass


def _ok(*args: str) -> str:
    from tests.conftest import run_cli

    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def recent_history(empty_store, bundled_raw, write_csv):
    """IBM's first 300 bars re-dated to the business days ending three days ago (their knowledge times, the
    ingest's, then fall within the views' 7-day TTL of the last bar), features computed, Feast applied."""
    from tests.conftest import run_module

    raw = bundled_raw[bundled_raw["Ticker"] == "IBM"].head(300).reset_index(drop=True)
    last = pd.Timestamp.now(tz="UTC").normalize() - pd.offsets.BDay(3)
    raw["Date"] = pd.bdate_range(end=last.tz_localize(None), periods=len(raw)).strftime("%Y-%m-%d")
    _ok("ingest", str(write_csv(raw, "recent.csv")))
    _ok("compute-features")
    run_module("feast", "apply")
    return raw


def _latest_created(conn) -> datetime:
    return conn.execute("SELECT max(created_timestamp) FROM features.technical_indicators").fetchone()[0]


def test_rows_decided_before_a_correction_join_the_replaced_version_and_after_it_feasts_answer(
    recent_history, empty_store, write_csv
):
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import PostgreSQLOfflineStore

    from training.contract import DEFAULT_FEATURE_SERVICE
    from training.feast_store.offline_store import AsOfRetrievalJob
    from training.feast_store.repository import feature_store

    first = _latest_created(empty_store)
    corrected = recent_history.copy()
    corrected.loc[len(corrected) - 2, "Close"] = repr(float(corrected.loc[len(corrected) - 2, "Close"]) * 1.03)
    corrected.loc[len(corrected) - 2, "High"] = repr(
        max(float(corrected.loc[len(corrected) - 2, "High"]), float(corrected.loc[len(corrected) - 2, "Close"]))
    )
    _ok("ingest", str(write_csv(corrected, "corrected.csv")))
    _ok("compute-features")
    second = _latest_created(empty_store)
    assert second > first
    assert empty_store.execute("SELECT count(*) FROM features.technical_indicators_history").fetchone()[0] > 0

    store = feature_store()
    service = store.get_feature_service(DEFAULT_FEATURE_SERVICE)
    views = {v.name: v for v in store.list_feature_views()}
    refs = [f"{p.name}:{f.name}" for p in service.feature_view_projections if p.name in views for f in p.features]
    between = first + (second - first) / 2
    times = [first - timedelta(seconds=1), first, between, second, second + timedelta(hours=1)]
    entity = pd.DataFrame({"symbol": "IBM", "event_timestamp": pd.to_datetime(times, utc=True)})

    def ours(lag: timedelta = timedelta(0)) -> pd.DataFrame:
        with deciding(lag):
            job = store.get_historical_features(entity, refs, filter_by_created_timestamp=True)
        assert isinstance(job, AsOfRetrievalJob)
        return job.to_df()

    decided = ours()
    event_time = store.get_historical_features(entity, refs).to_df()
    # Feast's stock store, one view at a time (it cannot join two views that share a column name).
    for name in dict.fromkeys(r.split(":")[0] for r in refs):
        mine = [r for r in refs if r.startswith(f"{name}:")]
        stock = PostgreSQLOfflineStore.get_historical_features(
            store.config, [views[name]], mine, entity, store.registry, store.project, False, True
        ).to_df()
        stock = stock.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
        expected = stock[["symbol", "event_timestamp", *(r.split(":")[1] for r in mine)]]
        pd.testing.assert_frame_equal(decided.iloc[3:][list(expected.columns)], expected.iloc[3:], check_exact=True)
        assert expected.iloc[0, 2:].isna().all()
    from training.indicators.definitions import FEATURE_NAMES

    changed = [c for c in FEATURE_NAMES if c in decided.columns and decided.loc[2, c] != event_time.loc[2, c]]
    assert changed  # the correction changed the last bar's features
    value = changed[0]
    # Before anything was known, no row; once the corrected versions are known, Feast's answer (the current rows).
    assert decided.loc[0, changed].isna().all()
    pd.testing.assert_frame_equal(decided.iloc[3:], event_time.iloc[3:], check_exact=True)
    # Between the two writes: the version known then, from the history table, which the stock store (current
    # rows only) cannot see.
    then = _known_then(empty_store, between, value)
    assert decided.loc[1:2, value].tolist() == [then, then]
    # A publication lag moves knowledge back: an hour after the correction, with an hour's lag, the first version.
    lagged = ours(timedelta(hours=1) + (second - between))
    assert lagged.loc[4, value] == then


def _known_then(conn, at: datetime, name: str) -> float:
    """The last bar's feature ``name`` as known at ``at``, read from the history table."""
    return conn.execute(
        f"SELECT {name} FROM features.technical_indicators_history WHERE created_timestamp <= %s "
        "AND superseded_timestamp > %s ORDER BY event_timestamp DESC LIMIT 1",
        (at, at),
    ).fetchone()[0]


@pytest.fixture
def live_history(empty_store, bundled_raw, write_csv):
    """IBM's first 400 bars with features written as a daily loop writes them: each bar's row known 10 minutes
    after its close (the stored knowledge times set so, as the live loop would have stamped them)."""
    from tests.conftest import run_module

    raw = bundled_raw[bundled_raw["Ticker"] == "IBM"].head(400).reset_index(drop=True)
    _ok("ingest", str(write_csv(raw, "ibm.csv")))
    _ok("compute-features")
    empty_store.execute(
        "UPDATE features.technical_indicators SET created_timestamp = event_timestamp + interval '10 minutes'"
    )
    run_module("feast", "apply")
    return raw


def _build(tmp_path, name: str, decision: bool) -> object:
    from training.dataset import artifact

    config = tmp_path / f"{name}.yaml"
    config.write_text(f"features:\n  decision_time: {{enabled: {str(decision).lower()}, publication_lag: 5m}}\n")
    _ok("build-dataset", "--symbols", "IBM", "--config", str(config), "--out", str(tmp_path / name))
    return artifact.load(tmp_path / name)


def test_a_decision_time_build_passes_the_audit_and_a_leaky_one_fails_it(live_history, tmp_path):
    from training.leakage import check_decision_time, check_point_in_time

    decided = _build(tmp_path, "decided", decision=True)
    assert decided.metadata["config"]["features"]["decision_time"] == {"enabled": True, "publication_lag": "300s"}
    frame = decided.frame
    # Each bar's features became usable 15 minutes after its close: every row joined the bar before its own.
    assert (frame["feature_timestamp"] < frame["event_timestamp"]).all()
    no_bars = lambda symbols: None  # noqa: E731  (these checks read versions, not bars)
    result = check_decision_time(decided, no_bars)
    assert result.status == "passed", result
    assert result.counts["rows"] == len(frame) and result.counts["versions"] >= len(frame)
    from training.leakage import BarHistory
    from training.leakage.bars import bar_reader

    with bar_reader(["IBM"]) as read:  # an older bar joined because the newest was not usable yet is no skip
        assert check_point_in_time(decided, lambda symbols: BarHistory.of(read(symbols))).status == "passed"

    # Leaky: the event-time build (each row joins its own bar, known only 10 minutes after the decision) claimed
    # as a decision-time dataset.
    event_time = _build(tmp_path, "event_time", decision=False)
    assert "decision_time" not in event_time.metadata["config"]["features"]
    assert event_time.metadata["fingerprint"] != decided.metadata["fingerprint"]
    assert check_decision_time(event_time, no_bars).status == "passed"  # event time claims nothing
    event_time.metadata["config"]["features"]["decision_time"] = {"enabled": True, "publication_lag": "300s"}
    leaky = check_decision_time(event_time, no_bars)
    assert leaky.status == "failed"
    assert leaky.counts["known_after_decision"] == len(event_time.frame) == leaky.offending_total
    assert leaky.offending[0]["problem"] == "joined a version usable only after the decision"
    # Values that no stored version has (a tampered row) fail too.
    from training.dataset.artifact import Dataset
    from training.indicators.definitions import FEATURE_NAMES

    tampered = decided.frame.copy()
    tampered.loc[0, next(f for f in decided.features if f in FEATURE_NAMES)] += 1.0
    result = check_decision_time(Dataset(metadata=decided.metadata, frame=tampered), no_bars)
    assert result.status == "failed" and result.counts["no_stored_version"] == 1


def test_the_features_check_recomputes_a_decision_time_row_from_the_bars_known_at_its_decision(
    live_history, empty_store, tmp_path, write_csv
):
    """A correction ingested before the build replaces a bar: rows decided before it joined feature versions
    computed from the bar it replaced. The features check recomputes those rows from the bars known at their
    decision (the build's bars would fail them), and still fails a tampered value among them."""
    from training.dataset.artifact import Dataset
    from training.infra.schema import OHLCV_TABLE
    from training.leakage import BarHistory, check_decision_time, check_features
    from training.leakage.bars import bar_reader

    # Bars known 5 minutes after their close, as the daily loop ingests them (features 10 minutes after).
    empty_store.execute(f"UPDATE {OHLCV_TABLE} SET created_timestamp = event_timestamp + interval '5 minutes'")
    corrected = live_history.copy()
    fixed = len(corrected) - 50
    corrected.loc[fixed, "Close"] = repr(float(corrected.loc[fixed, "Close"]) * 1.03)
    corrected.loc[fixed, "High"] = repr(max(float(corrected.loc[fixed, "High"]), float(corrected.loc[fixed, "Close"])))
    _ok("ingest", str(write_csv(corrected, "corrected.csv")))
    _ok("compute-features")
    assert empty_store.execute("SELECT count(*) FROM features.technical_indicators_history").fetchone()[0] > 0

    decided = _build(tmp_path, "decided", decision=True)
    frame = decided.frame
    after_fix = frame["feature_timestamp"] >= pd.Timestamp(corrected.loc[fixed, "Date"], tz="UTC")
    assert after_fix.sum() > 1  # rows decided (long) before the correction, whose joined bar it restated
    no_bars = lambda symbols: None  # noqa: E731
    assert check_decision_time(decided, no_bars).status == "passed"  # they joined the replaced versions

    reads: list[str] = []

    def bars_at(symbols, when):
        reads.append(when)
        return read_bars_at(symbols, when)

    from training.leakage.bars import read_bars_at
    from training.leakage.check_features import FeatureScan
    from training.leakage.stream import run_one

    with bar_reader(["IBM"], decided.metadata.get("known_at")) as read:
        bars = lambda symbols: BarHistory.of(read(symbols))  # noqa: E731
        # Against the bars known at the build (what the check did before): every restated row fails.
        no_changes = lambda symbols, known_at: pd.DataFrame({"symbol": [], "changed": [], "first": []})  # noqa: E731
        build_only = run_one(decided, bars, FeatureScan(decided, changes=no_changes))
        assert build_only.status == "failed" and build_only.counts["mismatched_rows"] == after_fix.sum()

        result = run_one(decided, bars, FeatureScan(decided, bars_at=bars_at))
        assert result.status == "passed", result
        assert result.counts["rows"] == len(frame) and result.counts["mismatched_rows"] == 0
        assert len(reads) == 1  # every restated row decided before the correction: one epoch, its eve
        assert check_features(decided, bars).status == "passed"

        # A tampered value in a restated row still fails, as does one in a row the correction did not touch.
        name = decided.features[0]
        finite = np.isfinite(frame[name].to_numpy(dtype=np.float64))
        for row in (int(np.flatnonzero(after_fix & finite)[0]), int(np.flatnonzero(~after_fix & finite)[0])):
            tampered = frame.copy()
            tampered.loc[row, name] = tampered.loc[row, name] * 1.01 + 1.0
            failed = check_features(Dataset(metadata=decided.metadata, frame=tampered), bars)
            assert failed.status == "failed" and failed.counts["mismatched_rows"] == 1
            assert failed.offending[0]["feature"] == name
