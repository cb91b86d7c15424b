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
