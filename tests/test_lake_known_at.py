"""The lake keeps versions as PostgreSQL does: after the same corrections, re-adjustment and later sessions, both
stores hold the same replaced versions, a Spark `build-dataset --known-at` rebuilds the lake's earlier dataset bit
for bit, and it equals PostgreSQL's build as known at the same time (both engines, through the engine interface).

One scenario (module-scoped: Spark's steps are slow) on two symbols, every write done in both stores, in order:
history ingested, features computed, Feast applied; the first lake build (its knowledge time T); then a vendor
correction, a dividend restating IBM's adjusted history and ten later sessions, ingested and recomputed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SCRATCH, _create_database, _drop_database, run_module, run_ok
from tests.test_known_at import LATER_SESSIONS, SYMBOLS, _dividend
from training.dataset import artifact
from training.indicators.feature_table import FEATURE_ROW_COLUMNS, FEATURES_HISTORY_TABLE
from training.infra import db, settings

FEATURE_VALUES = [c for c in FEATURE_ROW_COLUMNS if c != "created_timestamp"]


@dataclass(frozen=True)
class Scenario:
    database: str
    lake: Path
    out: Path

    def build(self, engine: str, name: str, *args: str) -> artifact.Dataset:
        with self.engine(engine):
            run_ok("build-dataset", "--symbols", SYMBOLS, "--out", str(self.out / name), *args)
        return artifact.load(self.out / name)

    @contextmanager
    def engine(self, engine: str) -> Iterator[None]:
        """The scenario's database, lake and Feast project (one per engine) for the commands run within."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PGDATABASE", self.database)
            patch.setenv("OHLCV_LAKE", str(self.lake))
            patch.setenv("OHLCV_ENGINE", engine)
            patch.setenv("FEAST_PROJECT", self.database if engine == "postgres" else f"{self.database}_lake")
            yield


@pytest.fixture(scope="module")
def scenario(isolated_services, spark, bundled_raw, tmp_path_factory) -> Iterator[Scenario]:
    folder = tmp_path_factory.mktemp("lake_known_at")
    raw = bundled_raw[bundled_raw["Ticker"].isin(SYMBOLS.split(","))].reset_index(drop=True)
    later = sorted(raw["Date"].unique())[-LATER_SESSIONS:]
    raw[~raw["Date"].isin(later)].to_csv(folder / "history.csv", index=False)
    changed = _dividend(raw, "IBM", "2012-11-07", 0.99)
    row = changed.index[(changed["Ticker"] == "AAPL") & (changed["Date"] == "2008-03-03")][0]
    changed.loc[row, "High"] = repr(float(changed.loc[row, "High"]) * 1.02)
    changed.to_csv(folder / "restated.csv", index=False)
    pg = settings.postgres()
    name = f"{SCRATCH}_{uuid.uuid4().hex[:6]}"
    _create_database(pg, name)
    try:
        scene = Scenario(name, folder / "lake", folder)
        for engine in ("postgres", "spark"):
            with scene.engine(engine):
                run_ok("ingest", str(folder / "history.csv"))
                run_ok("compute-features")
                run_module("feast", "apply")
        scene.build("spark", "first")
        for engine in ("postgres", "spark"):
            with scene.engine(engine):
                run_ok("ingest", str(folder / "restated.csv"))
                run_ok("compute-features")
        scene.build("spark", "now")
        yield scene
    finally:
        _drop_database(pg, name)


def _lake_versions(lake: Path, name: str, columns: list[str]) -> pd.DataFrame:
    frame = pd.read_parquet(lake / f"{name}_history")
    assert (frame["superseded_timestamp"] >= frame["created_timestamp"]).all()
    return _values(frame, columns)


def _postgres_versions(database: str, table: str, columns: list[str]) -> pd.DataFrame:
    with db.connect(dbname=database) as conn:
        query = f"SELECT {', '.join(columns)} FROM {table}"
        return _values(db.copy_out(conn, query, {}, parse_dates=["event_timestamp"]), columns)


def _values(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The versions' values, in one order (each store stamps its versions with its own clock)."""
    frame = frame[columns].copy()
    frame["symbol"] = frame["symbol"].astype(str)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).astype("datetime64[us, UTC]")
    if "trade_date" in frame:
        frame["trade_date"] = pd.to_datetime(frame["trade_date"]).astype("datetime64[s]")
    for column in columns[3:]:
        frame[column] = frame[column].astype("float64")
    return frame.sort_values(columns).reset_index(drop=True)


def test_a_lake_build_known_at_its_first_builds_time_gives_its_fingerprint(scenario):
    first, now = artifact.load(scenario.out / "first"), artifact.load(scenario.out / "now")
    known_at = first.metadata["known_at"]
    assert datetime.fromisoformat(known_at).utcoffset() is not None  # the lake's clock, recorded by the build
    assert len(pd.read_parquet(scenario.lake / "bars_history")) > 3000  # IBM's adjusted history restated
    assert len(pd.read_parquet(scenario.lake / "features_history")) > 0
    assert now.metadata["fingerprint"] != first.metadata["fingerprint"]
    again = scenario.build("spark", "again", "--known-at", known_at)
    assert again.metadata["fingerprint"] == first.metadata["fingerprint"]
    assert again.metadata["known_at"] == known_at
    pd.testing.assert_frame_equal(again.frame, first.frame, check_exact=True)
    # The audit's own lake reader (Arrow, no Spark) reads the bars the build saw, not the restated ones.
    from training.leakage.bars import bar_reader

    with scenario.engine("spark"):
        with bar_reader(["IBM"], known_at) as read_then, bar_reader(["IBM"]) as read_now:
            then, newest = read_then(["IBM"]), read_now(["IBM"])
        report = run_ok("verify-leakage", "--dataset", str(scenario.out / "first"), "--skip-rebuild")
    assert len(then) == len(newest) - LATER_SESSIONS
    assert not then["close"].equals(newest["close"].iloc[: len(then)].reset_index(drop=True))
    assert "FAIL" not in report


def _adjusted_bars(scenario: Scenario, engine: str, at: str | None) -> pd.DataFrame:
    """The adjusted bars each engine's builder reads, as known at ``at`` (None: the newest)."""
    from training.dataset.offline_bars import read_bars
    from training.engines.spark import lake_bars
    from training.engines.spark.session import session
    from training.infra.versions import knowing

    with scenario.engine(engine), knowing(datetime.fromisoformat(at) if at else None):
        if engine == "spark":
            return lake_bars.read_bars(session(), SYMBOLS.split(","))
        with db.connect() as conn:
            return read_bars(conn, SYMBOLS.split(","))


def test_postgres_and_the_lake_keep_the_same_versions_and_build_the_same_dataset_as_known_at_one_time(scenario):
    """The same answers as known at any time: the adjusted bars (however PostgreSQL stores a re-adjustment), the
    replaced feature rows, and the datasets."""
    known_at = artifact.load(scenario.out / "first").metadata["known_at"]
    for at in (known_at, None):
        on_lake, on_postgres = _adjusted_bars(scenario, "spark", at), _adjusted_bars(scenario, "postgres", at)
        assert len(on_lake) == len(on_postgres) > 0
        for column in on_lake.columns:  # each reader's own dtypes for the builder's kernels: values compared
            assert on_lake[column].tolist() == on_postgres[column].tolist(), column
    pd.testing.assert_frame_equal(
        _lake_versions(scenario.lake, "features", FEATURE_VALUES),
        _postgres_versions(scenario.database, FEATURES_HISTORY_TABLE, FEATURE_VALUES),
        check_exact=True,
    )
    first, now = artifact.load(scenario.out / "first"), artifact.load(scenario.out / "now")
    then = scenario.build("postgres", "postgres-then", "--known-at", first.metadata["known_at"])
    assert then.metadata["fingerprint"] == first.metadata["fingerprint"]
    assert then.metadata["known_at"] == first.metadata["known_at"]
    pd.testing.assert_frame_equal(then.frame, first.frame, check_exact=True)
    newest = scenario.build("postgres", "postgres-now")
    assert newest.metadata["fingerprint"] == now.metadata["fingerprint"]
    # Each build without --known-at records its own store's clock at its start: the later build, the later time.
    assert datetime.fromisoformat(newest.metadata["known_at"]) > datetime.fromisoformat(now.metadata["known_at"])


def _recent(raw: pd.DataFrame, bars: int) -> pd.DataFrame:
    """Each symbol's first ``bars`` bars re-dated to the business days ending three days ago: their knowledge
    times (the writes') then fall within the views' 7-day TTL of the last bar."""
    last = (pd.Timestamp.now(tz="UTC").normalize() - pd.offsets.BDay(3)).tz_localize(None)
    dates = pd.bdate_range(end=last, periods=bars).strftime("%Y-%m-%d")
    frames = [raw[raw["Ticker"] == s].head(bars).assign(Date=dates) for s in SYMBOLS.split(",")]
    return pd.concat(frames, ignore_index=True)


def _decided(scene: Scenario, engine: str, entity: pd.DataFrame) -> pd.DataFrame:
    """The default feature service joined by decision time (lag 0) in ``engine``'s as-of store."""
    from training.contract import DEFAULT_FEATURE_SERVICE
    from training.feast_store.repository import feature_store

    with scene.engine(engine):
        store = feature_store()
        service = store.get_feature_service(DEFAULT_FEATURE_SERVICE)
        views = {v.name for v in store.list_feature_views()}
        refs = [f"{p.name}:{f.name}" for p in service.feature_view_projections if p.name in views for f in p.features]
        frame = store.get_historical_features(entity, refs, filter_by_created_timestamp=True).to_df()
    return frame.sort_values(["symbol", "event_timestamp"], kind="stable").reset_index(drop=True)


def _in_us(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps naive UTC in microseconds, as Spark hands them back (the PostgreSQL store: tz-aware or ns)."""
    frame = frame.copy()
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            frame[name] = column.astype("datetime64[us]")
    return frame


def test_the_lakes_decision_time_join_reads_every_version_as_postgres_does(
    isolated_services, spark, bundled_raw, tmp_path
):
    """After a correction, a row decided before it joins the replaced version (from features_history/ on the lake,
    from the history table on PostgreSQL), a row decided after it the corrected one: both stores the same."""
    recent = _recent(bundled_raw, 80)
    recent.to_csv(tmp_path / "recent.csv", index=False)
    corrected = recent.copy()
    row = corrected.index[corrected["Ticker"] == "IBM"][-2]
    corrected.loc[row, "Close"] = repr(float(corrected.loc[row, "Close"]) * 1.03)
    corrected.loc[row, "High"] = repr(max(float(corrected.loc[row, "High"]), float(corrected.loc[row, "Close"])))
    corrected.to_csv(tmp_path / "corrected.csv", index=False)
    name = f"{SCRATCH}_{uuid.uuid4().hex[:6]}"
    _create_database(settings.postgres(), name)
    try:
        scene = Scenario(name, tmp_path / "lake", tmp_path)
        for engine in ("postgres", "spark"):
            with scene.engine(engine):
                run_ok("ingest", str(tmp_path / "recent.csv"))
                run_ok("compute-features")
                run_module("feast", "apply")
        first = pd.Timestamp.now(tz="UTC")  # after every first version, before every corrected one
        for engine in ("postgres", "spark"):
            with scene.engine(engine):
                run_ok("ingest", str(tmp_path / "corrected.csv"))
                run_ok("compute-features")
        assert len(pd.read_parquet(scene.lake / "features_history")) > 0
        now = pd.Timestamp.now(tz="UTC")
        times = [first - pd.Timedelta(days=30), first, now]
        entity = pd.DataFrame(
            [(s, t) for s in SYMBOLS.split(",") for t in times], columns=["symbol", "event_timestamp"]
        )
        on_lake, on_postgres = _decided(scene, "spark", entity), _decided(scene, "postgres", entity)
    finally:
        _drop_database(settings.postgres(), name)
    on_postgres = on_postgres[list(on_lake.columns)]
    pd.testing.assert_frame_equal(_in_us(on_lake), _in_us(on_postgres), check_exact=True, check_dtype=False)
    ibm = on_lake[on_lake["symbol"] == "IBM"].reset_index(drop=True)
    assert ibm.iloc[0, 2:].isna().all()  # decided before anything was known
    history = pd.read_parquet(scene.lake / "features_history")
    replaced = history[history["symbol"] == "IBM"].sort_values("event_timestamp").iloc[-1]
    current = pd.read_parquet(scene.lake / "features")
    current = current[current["symbol"] == "IBM"].sort_values("event_timestamp").iloc[-1]
    assert replaced["event_timestamp"] == current["event_timestamp"]  # the last bar's row, replaced once
    changed = [c for c in ibm.columns[2:] if c in history and pd.notna(replaced[c]) and replaced[c] != current[c]]
    assert changed  # the correction changed the last bar's features
    assert ibm.loc[1, changed].tolist() == replaced[changed].tolist()  # decided before it: the replaced version
    assert ibm.loc[2, changed].tolist() == current[changed].tolist()  # decided after it: the corrected one
