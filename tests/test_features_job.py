"""compute-features on real PostgreSQL: TA-Lib-exact values, warm-up, idempotence, incremental = full, bad input.

The reference values below call TA-Lib (and the SPEC's formulas) directly on adjusted series built from
the raw CSV: an oracle written independently of the definition table on purpose, checked to cover
exactly the table's features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from click.testing import CliRunner

from tests.conftest import BUNDLED_DATA
from tests.hypertables import row_counters, row_versions, settle_compression
from training.cli import cli
from training.indicators.compute import BAR_COLUMNS, compute_symbol
from training.indicators.definitions import FEATURE_NAMES, INDICATORS, warmup_bars
from training.infra import db
from training.infra.schema import ensure_ohlcv_table

FEATURES = "features.technical_indicators"
ALL_ROWS = 12154
LOOKBACK = {i.name: i.lookback for i in INDICATORS}


def run(*args: str):
    return CliRunner().invoke(cli, [*args], catch_exceptions=False)


def snapshot(conn) -> list[tuple]:
    """Every stored value, created_timestamp included."""
    if conn.execute("SELECT to_regclass(%s)", (FEATURES,)).fetchone()[0] is None:
        return []
    return conn.execute(f"SELECT * FROM {FEATURES} ORDER BY symbol, event_timestamp").fetchall()


def values(conn) -> pd.DataFrame:
    """The table without created_timestamp, as floats (NULL -> NaN)."""
    with db.connect() as c:
        frame = db.copy_out(
            c, f"SELECT * FROM {FEATURES} ORDER BY symbol, event_timestamp", parse_dates=["event_timestamp"]
        )
    return frame.drop(columns="created_timestamp")


def adjusted_bars(raw: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """Per symbol, OHLCV adjusted by adj_close / close (volume divided by the same factor), oldest first."""
    out = {}
    for symbol, group in raw.groupby("Ticker"):
        group = group.sort_values("Date")
        close, adj = group["Close"].astype(float).to_numpy(), group["Adj Close"].astype(float).to_numpy()
        factor = adj / close
        out[symbol] = {
            "open": group["Open"].astype(float).to_numpy() * factor,
            "high": group["High"].astype(float).to_numpy() * factor,
            "low": group["Low"].astype(float).to_numpy() * factor,
            "close": adj,
            "volume": group["Volume"].astype(float).to_numpy() / factor,
        }
    return out


def _macd(b, k):
    return talib.MACD(b["close"], fastperiod=12, slowperiod=26, signalperiod=9)[k]


def _bb(b, k):
    return talib.BBANDS(b["close"], timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)[k]


REFERENCE = {
    "sma_5": lambda b: talib.SMA(b["close"], timeperiod=5),
    "sma_10": lambda b: talib.SMA(b["close"], timeperiod=10),
    "sma_20": lambda b: talib.SMA(b["close"], timeperiod=20),
    "ema_12": lambda b: talib.EMA(b["close"], timeperiod=12),
    "ema_26": lambda b: talib.EMA(b["close"], timeperiod=26),
    "rsi_14": lambda b: talib.RSI(b["close"], timeperiod=14),
    "roc_1": lambda b: talib.ROC(b["close"], timeperiod=1),
    "roc_5": lambda b: talib.ROC(b["close"], timeperiod=5),
    "roc_10": lambda b: talib.ROC(b["close"], timeperiod=10),
    "macd": lambda b: _macd(b, 0),
    "macd_signal": lambda b: _macd(b, 1),
    "macd_hist": lambda b: _macd(b, 2),
    "atr_14": lambda b: talib.ATR(b["high"], b["low"], b["close"], timeperiod=14),
    "bb_upper": lambda b: _bb(b, 0),
    "bb_middle": lambda b: _bb(b, 1),
    "bb_lower": lambda b: _bb(b, 2),
    "bb_width": lambda b: (_bb(b, 0) - _bb(b, 2)) / _bb(b, 1),
    "bb_pct_b": lambda b: (b["close"] - _bb(b, 2)) / (_bb(b, 0) - _bb(b, 2)),
    "volume_sma_5": lambda b: talib.SMA(b["volume"], timeperiod=5),
    "volume_sma_20": lambda b: talib.SMA(b["volume"], timeperiod=20),
    "volume_change": lambda b: np.r_[np.nan, b["volume"][1:] / b["volume"][:-1] - 1.0],
    "high_low_ratio": lambda b: b["high"] / b["low"],
    "close_open_ratio": lambda b: b["close"] / b["open"],
}


@pytest.fixture
def ingested(empty_store):
    result = run("ingest", str(BUNDLED_DATA))
    assert result.exit_code == 0, result.output
    return empty_store


@pytest.fixture
def computed(ingested):
    result = run("compute-features")
    assert result.exit_code == 0, result.output
    assert f"{ALL_ROWS} inserted, 0 updated, 0 unchanged" in result.output
    return ingested


def test_every_feature_equals_talib_with_nulls_exactly_during_its_warmup(computed, bundled_raw):
    assert set(REFERENCE) == set(FEATURE_NAMES)
    assert LOOKBACK["macd"] == LOOKBACK["macd_signal"] == LOOKBACK["macd_hist"] == 33 == warmup_bars()
    stored = values(computed)
    assert len(stored) == ALL_ROWS
    for symbol, bars in adjusted_bars(bundled_raw).items():
        rows = stored[stored["symbol"] == symbol]
        np.testing.assert_allclose(rows["close"], bars["close"], rtol=1e-12, err_msg=f"{symbol} close")
        np.testing.assert_allclose(rows["volume"], bars["volume"], rtol=1e-12, err_msg=f"{symbol} volume")
        for name, reference in REFERENCE.items():
            expected, got, lookback = reference(bars), rows[name].to_numpy(), LOOKBACK[name]
            leading_nans = int(np.argmax(~np.isnan(expected)))
            assert leading_nans == lookback, f"{name}: TA-Lib warms up in {leading_nans} bars, table says {lookback}"
            assert np.isnan(got[:lookback]).all(), f"{symbol} {name}: value inside the warm-up"
            assert not np.isnan(got[lookback:]).any(), f"{symbol} {name}: NULL after the warm-up"
            np.testing.assert_allclose(
                got[lookback:], expected[lookback:], rtol=1e-9, atol=0, err_msg=f"{symbol} {name}"
            )


def test_rerunning_changes_nothing_created_timestamp_included(computed):
    before = snapshot(computed)
    again = run("compute-features")
    assert again.exit_code == 0, again.output
    assert "up to date" in again.output
    full = run("compute-features", "--full")
    assert full.exit_code == 0, full.output
    assert f"0 inserted, 0 updated, {ALL_ROWS} unchanged" in full.output
    assert snapshot(computed) == before


def test_incremental_run_equals_a_full_recompute(empty_store, bundled_raw, write_csv):
    early = bundled_raw[bundled_raw["Date"] < "2008-01-01"]
    assert run("ingest", str(write_csv(early, "early.csv"))).exit_code == 0
    first = run("compute-features")
    assert f"{len(early)} inserted, 0 updated" in first.output, first.output
    early_rows = snapshot(empty_store)

    assert run("ingest", str(BUNDLED_DATA)).exit_code == 0
    second = run("compute-features")
    assert second.exit_code == 0, second.output
    assert f"{ALL_ROWS - len(early)} rows of 5 symbol(s) computed (incremental): " in second.output
    assert f"{ALL_ROWS - len(early)} inserted, 0 updated, 0 unchanged" in second.output
    incremental = values(empty_store)
    assert set(early_rows) <= set(snapshot(empty_store))  # earlier rows untouched, created_timestamp included

    empty_store.execute(f"DROP TABLE {FEATURES}")
    assert run("compute-features").exit_code == 0
    pd.testing.assert_frame_equal(values(empty_store), incremental, check_exact=True)


def test_start_and_end_restrict_the_rows_written_but_not_the_history_read(ingested):
    partial = run("compute-features", "--symbols", "aapl", "--start", "2005-01-03", "--end", "2005-12-30")
    assert partial.exit_code == 0, partial.output
    window = values(ingested)
    assert set(window["symbol"]) == {"AAPL"}
    assert len(window) == 252
    assert window["event_timestamp"].min() == pd.Timestamp("2005-01-03 21:00", tz="UTC")
    assert window["event_timestamp"].max() == pd.Timestamp("2005-12-30 21:00", tz="UTC")
    assert not window[list(FEATURE_NAMES)].isna().any().any()  # warmed up by history before --start

    rest = run("compute-features")
    assert f"{ALL_ROWS - 252} inserted, 0 updated, 252 unchanged" in rest.output, rest.output
    everything = values(ingested)
    pd.testing.assert_frame_equal(
        everything[
            everything["event_timestamp"].isin(window["event_timestamp"]) & (everything["symbol"] == "AAPL")
        ].reset_index(drop=True),
        window,
        check_exact=True,
    )


def test_lookback_only_history_would_not_be_exact(bundled_raw):
    """Why incremental runs read whole histories: the recursive indicators depend on their seed."""
    bars = adjusted_bars(bundled_raw)["AAPL"]
    full = compute_symbol(bars)
    tail = compute_symbol({c: a[-(warmup_bars() + 1) :] for c, a in bars.items()})
    for name in ("ema_26", "rsi_14", "atr_14", "macd", "macd_signal"):
        assert abs(tail[name][-1] / full[name][-1] - 1) > 1e-9, name
    for name in ("sma_20", "bb_middle", "roc_10", "high_low_ratio"):
        assert tail[name][-1] == pytest.approx(full[name][-1], rel=1e-12), name


def _random_bars(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 20.0 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))
    open_ = close * np.exp(rng.normal(0, 0.01, n))
    volume = rng.integers(0, 5, n) * 1000.0  # zeros: volume_change is inf or NaN there
    return pd.DataFrame(
        {
            "Date": pd.bdate_range("2011-01-03", periods=n).strftime("%Y-%m-%d"),
            "Open": open_,
            "High": np.maximum(open_, close) * 1.01,
            "Low": np.minimum(open_, close) * 0.99,
            "Close": close,
            "Volume": volume,
        }
    )


def test_stored_features_at_t_ignore_later_bars_altered_or_removed(empty_store, write_csv):
    """The property of test_indicators_point_in_time, end to end: ingest, compute, change the future."""
    bars = _random_bars(120, seed=11)  # no Adj Close: features from raw prices
    cut = 70
    t = pd.Timestamp(f"{bars['Date'][cut]} 16:00", tz="America/New_York").tz_convert("UTC")
    assert run("ingest", str(write_csv(bars)), "--symbol", "RND").exit_code == 0
    assert run("compute-features").exit_code == 0
    past = [r for r in snapshot(empty_store) if r[1] <= t]
    assert len(past) == cut + 1

    altered = bars.copy()
    altered.loc[cut + 1 :, ["Open", "High", "Low", "Close"]] *= 1.7
    assert run("ingest", str(write_csv(altered, "altered.csv")), "--symbol", "RND").exit_code == 0
    redo = run("compute-features")  # incremental: finds the corrected bars by their reference values
    assert f"{120 - cut - 1} rows of 1 symbol(s) computed (incremental): 0 inserted, {120 - cut - 1} updated" in (
        redo.output
    ), redo.output
    assert [r for r in snapshot(empty_store) if r[1] <= t] == past

    for table in ("market_data.ohlcv_daily", FEATURES):
        empty_store.execute(f"DELETE FROM {table} WHERE event_timestamp > %s", (t,))
    removed = run("compute-features", "--full")
    assert f"0 inserted, 0 updated, {cut + 1} unchanged" in removed.output, removed.output
    assert snapshot(empty_store) == past


def test_a_corrected_old_bar_is_recomputed_from_there_on(ingested, bundled_raw, write_csv):
    assert run("compute-features").exit_code == 0
    corrected = bundled_raw.copy()
    aapl = corrected.index[corrected["Ticker"] == "AAPL"]
    row = aapl[-100]  # 100th bar from the end of AAPL
    corrected.loc[row, ["Open", "High", "Low", "Close", "Adj Close"]] = (
        corrected.loc[row, ["Open", "High", "Low", "Close", "Adj Close"]].astype(float).mul(1.05).astype(str)
    )
    assert run("ingest", str(write_csv(corrected))).exit_code == 0
    result = run("compute-features")
    assert "100 rows of 1 symbol(s) computed (incremental)" in result.output, result.output
    incremental = values(ingested)
    ingested.execute(f"DROP TABLE {FEATURES}")
    assert run("compute-features").exit_code == 0
    pd.testing.assert_frame_equal(values(ingested), incremental, check_exact=True)


BAD_INPUTS = {
    "unknown symbol": (["--symbols", "AAPL,ZZZZ,QQQQ"], "unknown symbol(s) ZZZZ, QQQQ"),
    "empty date range": (
        ["--start", "1990-01-01", "--end", "1990-12-31"],
        "empty date range: no bars between 1990-01-01 and 1990-12-31 for any symbol",
    ),
    "range without bars of that symbol": (
        ["--symbols", "AAPL", "--start", "2030-01-01"],
        "empty date range: no bars on or after 2030-01-01 for AAPL",
    ),
    "start after end": (
        ["--start", "2010-01-01", "--end", "2009-01-01"],
        "--start 2010-01-01 is after --end 2009-01-01",
    ),
    "unparseable date": (["--start", "2010-13-01"], "Invalid value for '--start'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_named_and_writes_nothing(case, computed):
    args, message = BAD_INPUTS[case]
    before = snapshot(computed)
    result = run("compute-features", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert snapshot(computed) == before


@pytest.mark.parametrize("table", ["missing", "empty"])
def test_no_market_data_is_named_and_creates_nothing(empty_store, table):
    if table == "empty":
        ensure_ohlcv_table(empty_store)
    result = run("compute-features")
    assert result.exit_code == 2, result.output
    assert "no market data: market_data.ohlcv_daily is empty" in result.output
    assert empty_store.execute("SELECT to_regclass(%s)", (FEATURES,)).fetchone()[0] is None


def test_bar_columns_are_the_ones_the_table_reads():
    assert {c for i in INDICATORS for c in i.inputs} <= set(BAR_COLUMNS)


def _stats_after(conn, ready, timeout: float = 20.0) -> tuple[int, int, int, int]:
    """Statistics reach pg_stat_user_tables when the writer's backend flushes them (at the latest on exit)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        stats = row_counters(conn, FEATURES)
        if ready(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def test_a_no_op_full_recompute_creates_no_row_versions(computed):
    """TimescaleDB decompresses every batch an INSERT ... ON CONFLICT checks; a read decides instead (issue 18)."""
    settle_compression(computed, FEATURES)
    before = _stats_after(computed, lambda s: s[0] >= ALL_ROWS)
    assert before[:3] == (ALL_ROWS, 0, 0)
    versions = row_versions(computed, FEATURES)
    assert {row[3] for row in versions} == {"0"}

    full = run("compute-features", "--full")
    assert f"0 inserted, 0 updated, {ALL_ROWS} unchanged" in full.output
    after = _stats_after(computed, lambda s: s[3] > before[3])  # the run read the table
    assert after[3] > before[3], "the run's statistics never arrived"
    assert after[:3] == before[:3]  # no insert, update or delete
    # xmax stays 0: not even a row lock, which ON CONFLICT DO UPDATE ... WHERE takes on every row it skips
    assert row_versions(computed, FEATURES) == versions
