"""``compute-features --engine spark`` fills the lake's features table with the PostgreSQL job's rows, bit for bit,
recomputes only what went stale, and writes nothing when nothing did."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import BUNDLED_DATA
from training.cli import cli
from training.indicators.definitions import FEATURE_NAMES, REFERENCE_COLUMNS
from training.infra import db
from training.infra.schema import FEATURES_TABLE

VALUES = (*FEATURE_NAMES, *REFERENCE_COLUMNS)


def _ok(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _lake_features(lake) -> pd.DataFrame:
    frame = pd.read_parquet(lake / "features").drop(columns="bucket")
    frame["symbol"] = frame["symbol"].astype(str)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
    return frame.sort_values(["symbol", "event_timestamp"]).reset_index(drop=True)


def _files(root) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def lake(pipeline, spark, tmp_path_factory):
    """The bundled data ingested into a lake of its own and its features computed on Spark."""
    root = tmp_path_factory.mktemp("lake")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OHLCV_LAKE", str(root))
        patch.setenv("OHLCV_ENGINE", "spark")
        _ok("ingest", str(BUNDLED_DATA))
        _ok("compute-features")
    return root


@pytest.fixture
def in_lake(lake, monkeypatch):
    monkeypatch.setenv("OHLCV_LAKE", str(lake))
    monkeypatch.setenv("OHLCV_ENGINE", "spark")
    return lake


def test_lake_features_equal_the_postgres_job_bit_for_bit(lake):
    ours = _lake_features(lake)
    with db.connect() as conn:
        stored = db.copy_out(conn, f"SELECT * FROM {FEATURES_TABLE} ORDER BY symbol, event_timestamp", {},
                             parse_dates=["event_timestamp"])  # fmt: skip
    assert len(ours) == len(stored) > 12_000
    np.testing.assert_array_equal(ours["symbol"].to_numpy(), stored["symbol"].to_numpy())
    np.testing.assert_array_equal(ours["event_timestamp"].array.asi8, stored["event_timestamp"].array.asi8)
    for name in VALUES:  # warm-up rows are NULL in both (NaN here)
        np.testing.assert_array_equal(ours[name].to_numpy(), stored[name].to_numpy(dtype=np.float64), err_msg=name)


def test_an_up_to_date_lake_writes_nothing(in_lake):
    files = _files(in_lake)
    assert "up to date, nothing to compute" in _ok("compute-features")
    assert _files(in_lake) == files


def test_a_corrected_bar_recomputes_its_symbol_only_and_equals_a_full_recompute(in_lake, bundled_raw, write_csv):
    before = _lake_features(in_lake)
    ibm = bundled_raw[bundled_raw["Ticker"] == "IBM"].iloc[[500]].copy()
    midpoint = (float(ibm["Low"].iloc[0]) + float(ibm["High"].iloc[0])) / 2
    assert midpoint != float(ibm["Close"].iloc[0])
    ibm["Close"] = repr(midpoint)  # a vendor's correction of one bar
    assert "1 updated" in _ok("ingest", str(write_csv(ibm, "ibm.csv")))
    output = _ok("compute-features")
    assert "of 1 symbol(s) computed (incremental)" in output and "0 inserted" in output
    after = _lake_features(in_lake)
    others = before["symbol"] != "IBM"
    pd.testing.assert_frame_equal(after[others.to_numpy()], before[others], check_exact=True)  # created kept too
    changed = (after[list(VALUES)].fillna(-1) != before[list(VALUES)].fillna(-1)).any(axis=1)
    assert set(after.loc[changed, "symbol"]) == {"IBM"}
    # An incremental run writes what a full recompute would: --full then changes nothing.
    assert ", 0 updated" in _ok("compute-features", "--full")


def test_unknown_symbols_are_refused_naming_them(in_lake):
    result = CliRunner().invoke(cli, ["compute-features", "--symbols", "IBM,NOPE"], catch_exceptions=False)
    assert result.exit_code == 2 and "NOPE" in result.output and "IBM" not in result.output.split(":")[-1]
