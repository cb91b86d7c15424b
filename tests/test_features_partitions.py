"""compute-features by symbol partitions: any partition size writes the table one big partition writes.

Each scenario starts from the same stored state (the features table is restored between runs) and runs
compute_features with one big partition, one symbol per partition and partitions of 2-3 symbols; the
tables must be equal bit for bit (NaN positions included) and the counts reported identical.
"""

from __future__ import annotations

import logging
from datetime import date

import pandas as pd
import pytest

from tests.conftest import BUNDLED_DATA
from tests.test_features_job import ALL_ROWS, FEATURES, run, snapshot, values
from training.indicators.backfill import FeaturesResult, compute_features
from training.partitions import symbol_partitions

BIG = 10**9
# Bundled bars per symbol: AAPL 3270, FB 196, GOOG 2148, IBM 3270, MSFT 3270.
GROUPINGS = {
    1: [("AAPL",), ("FB",), ("GOOG",), ("IBM",), ("MSFT",)],
    3500: [("AAPL", "FB"), ("GOOG",), ("IBM",), ("MSFT",)],
    6600: [("AAPL", "FB", "GOOG"), ("IBM", "MSFT")],
}
BASELINE = "public.features_partition_baseline"


def _keep_state(conn) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {BASELINE}")
    conn.execute(f"CREATE TABLE {BASELINE} AS SELECT * FROM {FEATURES}")


def _restore_state(conn) -> None:
    conn.execute(f"DELETE FROM {FEATURES}")
    conn.execute(f"INSERT INTO {FEATURES} SELECT * FROM {BASELINE}")


def _each_budget(conn, **kwargs) -> dict[int, tuple[FeaturesResult, pd.DataFrame]]:
    """From the same stored features, the result and the table of a run with each partition size.

    The stored features are left as they were found.
    """
    _keep_state(conn)
    out = {}
    for budget in (BIG, *GROUPINGS):
        _restore_state(conn)
        result = compute_features(partition_bars=budget, **kwargs)
        out[budget] = (result, values(conn))
    _restore_state(conn)
    conn.execute(f"DROP TABLE {BASELINE}")
    return out


def _assert_all_equal(runs: dict[int, tuple[FeaturesResult, pd.DataFrame]]) -> FeaturesResult:
    expected_result, expected = runs[BIG]
    for budget, (result, table) in runs.items():
        assert result == expected_result, f"partition_bars={budget}"
        pd.testing.assert_frame_equal(table, expected, check_exact=True, obj=f"partition_bars={budget}")
    return expected_result


@pytest.fixture
def ingested(empty_store):
    result = run("ingest", str(BUNDLED_DATA))
    assert result.exit_code == 0, result.output
    return empty_store


def test_the_partitions_are_the_ones_the_tests_mean(ingested):
    for budget, grouping in GROUPINGS.items():
        assert [p.symbols for p in symbol_partitions(ingested, None, budget)] == grouping, budget


def test_a_full_run_in_partitions_equals_one_partition(ingested):
    assert run("compute-features").exit_code == 0  # the table exists; _each_budget empties it before each run
    ingested.execute(f"DELETE FROM {FEATURES}")
    runs = _each_budget(ingested, full=True)
    result = _assert_all_equal(runs)
    assert result == FeaturesResult(rows=ALL_ROWS, inserted=ALL_ROWS, updated=0, symbols=5, full=True, removed=0)
    assert runs[BIG][1][["sma_20", "macd_hist"]].isna().any().all()  # the warm-up NULLs were compared too


def test_an_incremental_run_in_partitions_equals_one_partition(empty_store, bundled_raw, write_csv):
    early = bundled_raw[bundled_raw["Date"] < "2008-01-01"]
    assert run("ingest", str(write_csv(early, "early.csv"))).exit_code == 0
    assert run("compute-features").exit_code == 0
    appended = bundled_raw[bundled_raw["Ticker"].isin(["AAPL", "FB"])]  # new bars of AAPL, a new symbol FB
    assert run("ingest", str(write_csv(appended, "appended.csv"))).exit_code == 0
    new_rows = len(appended) - len(early[early["Ticker"] == "AAPL"])

    result = _assert_all_equal(_each_budget(empty_store))
    assert result == FeaturesResult(rows=new_rows, inserted=new_rows, updated=0, symbols=2, full=False, removed=0)

    # a full recompute restricted by --start: every symbol is read, only AAPL and FB have rows to write
    result = _assert_all_equal(_each_budget(empty_store, full=True, start=date(2008, 1, 1)))
    assert result == FeaturesResult(rows=new_rows, inserted=new_rows, updated=0, symbols=2, full=True, removed=0)


def test_a_no_op_run_in_partitions_writes_nothing(ingested):
    assert compute_features(partition_bars=1).inserted == ALL_ROWS
    before = snapshot(ingested)
    again = compute_features(partition_bars=1)
    assert again == FeaturesResult(rows=0, inserted=0, updated=0, symbols=0, full=False, removed=0)
    full = compute_features(partition_bars=3500, full=True)
    assert full == FeaturesResult(rows=ALL_ROWS, inserted=0, updated=0, symbols=5, full=True, removed=0)
    assert snapshot(ingested) == before


def test_the_partition_size_comes_from_the_setting_by_default(ingested, monkeypatch, caplog):
    monkeypatch.setenv("OHLCV_PARTITION_BARS", "6600")
    with caplog.at_level(logging.DEBUG, logger="training.indicators.backfill"):
        result = run("compute-features")
    assert result.exit_code == 0, result.output
    assert f"{ALL_ROWS} inserted, 0 updated, 0 unchanged" in result.output
    assert "5 symbol(s) in 2 partition(s) of <= 6600 bars (largest 6540)" in caplog.text

    monkeypatch.setenv("OHLCV_PARTITION_BARS", "0")
    refused = run("compute-features", "--full")
    assert refused.exit_code == 2, refused.output
    assert "OHLCV_PARTITION_BARS must be a whole number of bars >= 1" in refused.output
