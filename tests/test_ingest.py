"""Ingestion into market_data.ohlcv_daily: correct stamps, idempotent, transactional, clear errors."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import BUNDLED_DATA
from training.cli import cli

TABLE_SNAPSHOT = "SELECT * FROM market_data.ohlcv_daily ORDER BY symbol, event_timestamp"


def run(*args: str):
    return CliRunner().invoke(cli, [*args], catch_exceptions=False)


def snapshot(conn) -> list[tuple]:
    exists = conn.execute("SELECT to_regclass('market_data.ohlcv_daily')").fetchone()[0]
    return conn.execute(TABLE_SNAPSHOT).fetchall() if exists else []


def test_bundled_file_lands_once_per_symbol_and_date(empty_store, bundled_raw):
    first = run("ingest", str(BUNDLED_DATA))
    assert first.exit_code == 0, first.output
    assert "12154 inserted" in first.output
    counts = dict(empty_store.execute("SELECT symbol, count(*) FROM market_data.ohlcv_daily GROUP BY 1").fetchall())
    assert counts == bundled_raw.groupby("Ticker").size().to_dict()
    assert len(counts) == 5
    duplicates = empty_store.execute(
        "SELECT count(*) FROM (SELECT symbol, trade_date FROM market_data.ohlcv_daily "
        "GROUP BY 1, 2 HAVING count(*) > 1) d"
    ).fetchone()[0]
    assert duplicates == 0

    before = snapshot(empty_store)
    second = run("ingest", str(BUNDLED_DATA))
    assert second.exit_code == 0, second.output
    assert "0 inserted, 0 updated, 12154 unchanged" in second.output
    assert snapshot(empty_store) == before  # content, created_timestamp included


def test_bars_are_stamped_at_the_new_york_session_close_in_utc(empty_store):
    assert run("ingest", str(BUNDLED_DATA)).exit_code == 0
    winter, summer = empty_store.execute(
        "SELECT event_timestamp AT TIME ZONE 'UTC' FROM market_data.ohlcv_daily "
        "WHERE symbol = 'AAPL' AND trade_date IN ('2000-03-01', '2000-07-05') ORDER BY trade_date"
    ).fetchall()
    assert str(winter[0]) == "2000-03-01 21:00:00"  # 16:00 EST
    assert str(summer[0]) == "2000-07-05 20:00:00"  # 16:00 EDT


def test_adjusted_prices_scale_ohlc_and_volume_by_the_same_factor(empty_store, bundled_raw):
    assert run("ingest", str(BUNDLED_DATA)).exit_code == 0
    row = empty_store.execute(
        "SELECT open, high, low, close, volume, adj_open, adj_high, adj_low, adj_close, adj_volume "
        "FROM market_data.ohlcv_daily WHERE symbol = 'AAPL' AND trade_date = '2000-03-01'"
    ).fetchone()
    o, h, lo, c, v, ao, ah, al, ac, av = row
    factor = ac / c
    assert ao == pytest.approx(o * factor, rel=1e-12)
    assert ah == pytest.approx(h * factor, rel=1e-12)
    assert al == pytest.approx(lo * factor, rel=1e-12)
    assert av == pytest.approx(v / factor, rel=1e-12)


def test_a_corrected_bar_is_updated_and_others_left_alone(empty_store, bundled_raw, write_csv):
    assert run("ingest", str(BUNDLED_DATA)).exit_code == 0
    corrected = bundled_raw.copy()
    corrected.loc[0, "Close"] = "131.00"
    result = run("ingest", str(write_csv(corrected)))
    assert result.exit_code == 0, result.output
    assert "0 inserted, 1 updated, 12153 unchanged" in result.output


def test_single_symbol_file_with_mapped_columns(empty_store, write_csv):
    frame = pd.DataFrame(
        {"day": ["2020-01-02", "2020-01-03"], "o": [1, 2], "h": [2, 3], "l": [0.5, 1.5], "c": [1.5, 2.5], "v": [10, 20]}
    )
    path = write_csv(frame)
    result = run(
        "ingest",
        str(path),
        "--symbol",
        "xyz",
        "--date-column",
        "day",
        "--open-column",
        "o",
        "--high-column",
        "h",
        "--low-column",
        "l",
        "--close-column",
        "c",
        "--volume-column",
        "v",
    )
    assert result.exit_code == 0, result.output
    rows = empty_store.execute("SELECT symbol, adj_close FROM market_data.ohlcv_daily").fetchall()
    assert rows == [("XYZ", None), ("XYZ", None)]


def test_parquet_input(empty_store, bundled_raw, tmp_path):
    path = tmp_path / "bars.parquet"
    bundled_raw.head(50).to_parquet(path)
    result = run("ingest", str(path))
    assert result.exit_code == 0, result.output
    assert empty_store.execute("SELECT count(*) FROM market_data.ohlcv_daily").fetchone()[0] == 50


def _break(frame: pd.DataFrame, line: int, column: str, value: str) -> pd.DataFrame:
    broken = frame.copy()
    broken.loc[line - 2, column] = value  # file line numbers count the header as line 1
    return broken


BAD_INPUTS = {
    "missing column": (lambda f: f.drop(columns=["High"]), "missing column(s): high"),
    "non-numeric price": (lambda f: _break(f, 7, "Close", "abc"), "non-numeric value in column 'Close' at line(s) 7"),
    "NaN price": (lambda f: _break(f, 9, "Open", "NaN"), "missing value in column 'Open' at line(s) 9"),
    "empty price": (lambda f: _break(f, 9, "Open", ""), "missing value in column 'Open' at line(s) 9"),
    "infinite price": (lambda f: _break(f, 4, "Low", "inf"), "non-numeric value in column 'Low' at line(s) 4"),
    "zero price": (lambda f: _break(f, 5, "Low", "0"), "non-positive price in column 'Low' at line(s) 5"),
    "negative price": (lambda f: _break(f, 5, "Adj Close", "-3"), "non-positive price in column 'Adj Close'"),
    "negative volume": (lambda f: _break(f, 6, "Volume", "-10"), "negative volume in column 'Volume' at line(s) 6"),
    "absurd price": (lambda f: _break(f, 5, "High", "1e308"), "price above 1,000,000,000 in column 'High' at line(s)"),
    "absurd volume": (lambda f: _break(f, 6, "Volume", "1e16"), "volume above 1,000,000,000,000,000 in column"),
    "a column twice": (lambda f: pd.concat([f, f[["Close"]]], axis=1), "column 'Close' appears 2 times in the header"),
    "ticker and symbol": (lambda f: f.assign(Symbol="MSFT"), "columns 'Ticker' and 'Symbol' could each be the symbol"),
    "high below low": (lambda f: _break(f, 3, "High", "1.0"), "high < low at line(s) 3"),
    "duplicate row": (lambda f: pd.concat([f, f.iloc[[10]]]), "duplicate (symbol, date) rows at line(s) 12"),
    "unparseable date": (
        lambda f: _break(f, 8, "Date", "2000-02-31"),
        "unparseable date in column 'Date' at line(s) 8",
    ),
    "garbage date": (lambda f: _break(f, 8, "Date", "yesterday"), "unparseable date in column 'Date'"),
    "time of day": (lambda f: _break(f, 8, "Date", "2000-03-13 10:30"), "carry a time of day"),
    "empty symbol": (lambda f: _break(f, 2, "Ticker", ""), "empty symbol in column 'Ticker' at line(s) 2"),
    "no rows": (lambda f: f.iloc[0:0], "the file holds no rows"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_named_and_writes_nothing(case, empty_store, bundled_raw, write_csv):
    assert run("ingest", str(BUNDLED_DATA)).exit_code == 0
    before = snapshot(empty_store)
    corrupt, message = BAD_INPUTS[case]
    broken = corrupt(bundled_raw.head(40).copy())
    result = run("ingest", str(write_csv(broken)))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert snapshot(empty_store) == before


def test_bad_row_deep_in_a_new_file_leaves_an_empty_store_empty(empty_store, bundled_raw, write_csv):
    broken = _break(bundled_raw, 12000, "High", "0.01")
    result = run("ingest", str(write_csv(broken)))
    assert result.exit_code == 2
    assert "high < low at line(s) 12000" in result.output
    assert snapshot(empty_store) == []


def test_unknown_file_and_unknown_mapped_column(empty_store, tmp_path, bundled_raw, write_csv):
    missing = run("ingest", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2 and "no such file" in missing.output
    path = write_csv(bundled_raw.head(5))
    unmapped = run("ingest", str(path), "--close-column", "Last")
    assert unmapped.exit_code == 2 and "column 'Last' given for close is not in the file" in unmapped.output


def test_unknown_time_zone_is_rejected(empty_store, bundled_raw, write_csv):
    result = run("ingest", str(write_csv(bundled_raw.head(5))), "--exchange-tz", "Mars/Olympus")
    assert result.exit_code == 2 and "Mars/Olympus" in result.output
