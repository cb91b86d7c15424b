"""Ingest refuses what it cannot read exactly: one date format per file, implausible bars (or drops them
with a report), bad symbols, corrupt files. Every refusal is one line, exit 2, and leaves the table as it was."""

from __future__ import annotations

import gzip
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import BUNDLED_DATA, run_module
from training.cli import cli
from training.errors import InputError
from training.ingestion.trade_dates import parse_dates

OHLCV = "market_data.ohlcv_daily"


def run(*args: str):
    return CliRunner().invoke(cli, [*args], catch_exceptions=False)


def state(conn) -> tuple[int, str | None]:
    """Row count and a checksum of every stored value (created_timestamp included)."""
    if conn.execute("SELECT to_regclass(%s)", (OHLCV,)).fetchone()[0] is None:
        return 0, None
    return conn.execute(
        f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY symbol, event_timestamp)) FROM {OHLCV} t"
    ).fetchone()


def assert_refused(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def loaded(empty_store, bundled_raw, write_csv):
    """The store holding 40 bundled bars; returns (connection, state before the test's ingest)."""
    assert run("ingest", str(write_csv(bundled_raw.head(40), "base.csv"))).exit_code == 0
    return empty_store, state(empty_store)


def stored_dates(conn) -> list[date]:
    return [r[0] for r in conn.execute(f"SELECT trade_date FROM {OHLCV} ORDER BY trade_date")]


def reformat(frame: pd.DataFrame, date_format: str) -> pd.DataFrame:
    out = frame.copy()
    out["Date"] = pd.to_datetime(out["Date"]).dt.strftime(date_format)
    return out


# --- item 3: one date format per file ------------------------------------------------------------------


@pytest.mark.parametrize("date_format", ["%Y%m%d", "%Y/%m/%d", "%d.%m.%Y", "%d-%b-%Y", "%m/%d/%Y", "%d/%m/%Y"])
def test_each_known_format_is_read_exactly(date_format, empty_store, bundled_raw, write_csv):
    frame = bundled_raw.head(60)  # March to May 2000: days above 12 make day/month order unambiguous
    result = run("ingest", str(write_csv(reformat(frame, date_format))))
    assert result.exit_code == 0, result.output
    assert stored_dates(empty_store) == sorted(pd.to_datetime(frame["Date"]).dt.date)


def test_day_first_dates_are_not_scrambled(empty_store, write_csv):
    days = ["01/03/2000", "02/03/2000", "13/03/2000", "14/03/2000"]
    frame = pd.DataFrame({"Date": days, "Open": 1, "High": 2, "Low": 1, "Close": 2, "Volume": 5})
    result = run("ingest", str(write_csv(frame)), "--symbol", "X")
    assert result.exit_code == 0, result.output
    assert stored_dates(empty_store) == [date(2000, 3, 1), date(2000, 3, 2), date(2000, 3, 13), date(2000, 3, 14)]


def test_ambiguous_dates_need_a_format(loaded, bundled_raw, write_csv):
    conn, before = loaded
    frame = reformat(bundled_raw.iloc[40:45], "%d/%m/%Y")  # 2000-04-26 .. : pick days <= 12 instead
    frame["Date"] = ["03/04/2000", "04/04/2000", "05/04/2000", "06/04/2000", "07/04/2000"]
    path = write_csv(frame)
    assert_refused(run("ingest", str(path)), "ambiguous dates in column 'Date'", "%m/%d/%Y, %d/%m/%Y", "--date-format")
    assert state(conn) == before
    result = run("ingest", str(path), "--date-format", "%d/%m/%Y")
    assert result.exit_code == 0, result.output
    assert date(2000, 4, 3) in stored_dates(conn)


def test_a_file_mixing_date_formats_is_refused_naming_lines(loaded, bundled_raw, write_csv):
    conn, before = loaded
    frame = bundled_raw.iloc[40:60].copy()
    frame.iloc[3, frame.columns.get_loc("Date")] = "05/01/2000"
    assert_refused(run("ingest", str(write_csv(frame))), "line(s) 5", "'05/01/2000'", "%Y-%m-%d", "--date-format")
    assert state(conn) == before


def test_a_given_format_that_does_not_fit_is_named(loaded, bundled_raw, write_csv):
    conn, before = loaded
    result = run("ingest", str(write_csv(bundled_raw.iloc[40:50])), "--date-format", "%d/%m/%Y")
    assert_refused(result, "unparseable date in column 'Date' at line(s) 2", "--date-format %d/%m/%Y")
    assert state(conn) == before


def test_mixed_utc_offsets_read_the_date_as_written(empty_store, bundled_raw, write_csv):
    frame = bundled_raw[bundled_raw["Ticker"] == "AAPL"].iloc[:5].copy()
    frame["Date"] = ["2000-03-01T00:00:00-05:00", "2000-03-02T00:00:00-04:00", "2000-03-03 00:00:00+00:00",
                     "2000-03-06T00:00:00Z", "2000-03-07"]  # fmt: skip
    result = run("ingest", str(write_csv(frame)))
    assert result.exit_code == 0, result.output
    assert stored_dates(empty_store) == [date(2000, 3, d) for d in (1, 2, 3, 6, 7)]


def test_a_time_of_day_with_an_offset_is_refused(loaded, bundled_raw, write_csv):
    conn, before = loaded
    frame = bundled_raw.iloc[40:45].copy()
    frame["Date"] = ["2000-04-26T21:00:00+00:00", "2000-04-27T00:00:00-04:00", "2000-04-28", "2000-05-01",
                     "2000-05-02"]  # fmt: skip
    assert_refused(run("ingest", str(write_csv(frame))), "line(s) 2 carry a time of day")
    assert state(conn) == before


def test_parquet_datetime_columns_are_dates(empty_store, bundled_raw, tmp_path):
    frame = bundled_raw.head(30).copy()
    frame["Date"] = pd.to_datetime(frame["Date"]).dt.tz_localize("America/New_York")
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    result = run("ingest", str(path))
    assert result.exit_code == 0, result.output
    assert stored_dates(empty_store) == sorted(pd.to_datetime(bundled_raw.head(30)["Date"]).dt.date)


@settings(max_examples=60, deadline=None)
@given(
    start=st.dates(min_value=date(1990, 1, 1), max_value=date(2030, 1, 1)),
    offsets=st.lists(st.integers(0, 4000), min_size=1, max_size=40, unique=True),
    date_format=st.sampled_from(["%Y-%m-%d", "%Y%m%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%d-%b-%Y"]),
)
def test_parse_dates_reads_any_file_exactly_or_refuses(start, offsets, date_format):
    days = [start + timedelta(days=o) for o in offsets]
    text = pd.Series([d.strftime(date_format) for d in days])
    try:
        parsed = parse_dates(text, "Date")
    except InputError as exc:
        assert "ambiguous" in str(exc)  # only when the day/month order cannot be told
        assert all(d.day <= 12 for d in days) and date_format in ("%d/%m/%Y", "%m/%d/%Y")
        assert list(parse_dates(text, "Date", date_format).dt.date) == days
        return
    assert list(parsed.dt.date) == days


# --- item 6: implausible bars -------------------------------------------------------------------------


def _implausible(frame: pd.DataFrame) -> pd.DataFrame:
    broken = frame.copy()
    broken.loc[broken.index[1], "Open"] = str(float(broken.iloc[1]["High"]) + 1)  # line 3
    broken.loc[broken.index[4], "Close"] = str(float(broken.iloc[4]["Low"]) / 2)  # line 6
    broken.loc[broken.index[7], "Date"] = "2000-05-06"  # line 9, a Saturday
    return broken


def test_implausible_bars_are_refused_by_default(loaded, bundled_raw, write_csv):
    conn, before = loaded
    message = assert_refused(
        run("ingest", str(write_csv(_implausible(bundled_raw.iloc[40:60])))),
        "open outside [low, high] at line(s) 3",
        "close outside [low, high] at line(s) 6",
        "weekend date at line(s) 9",
        "--on-invalid drop",
    )
    assert "Traceback" not in message
    assert state(conn) == before


def test_dropped_bars_are_reported_and_the_rest_loaded(loaded, bundled_raw, write_csv, tmp_path):
    conn, before = loaded
    report = tmp_path / "reports" / "dropped.csv"
    frame = _implausible(bundled_raw.iloc[40:60])
    result = run("ingest", str(write_csv(frame)), "--on-invalid", "drop", "--invalid-report", str(report))
    assert result.exit_code == 0, result.output
    assert "17 inserted" in result.output and f"3 implausible row(s) dropped, listed in {report}" in result.output
    dropped = pd.read_csv(report, dtype=str, keep_default_na=False)
    assert dropped["line"].tolist() == ["3", "6", "9"]
    assert dropped["reason"].tolist() == ["open outside [low, high]", "close outside [low, high]", "weekend date"]
    assert dropped["Date"].tolist() == frame.iloc[[1, 4, 7]]["Date"].tolist()
    assert state(conn)[0] == before[0] + 17


def test_the_default_report_goes_to_artifacts(empty_store, bundled_raw, write_csv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("ingest", str(write_csv(_implausible(bundled_raw.iloc[40:60]))), "--on-invalid", "drop")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "artifacts" / "ingest_dropped.csv")) == 3


def test_weekend_bars_can_be_allowed(empty_store, bundled_raw, write_csv):
    frame = bundled_raw.iloc[40:45].copy()
    frame.loc[frame.index[2], "Date"] = "2000-04-29"  # Saturday
    assert run("ingest", str(write_csv(frame)), "--allow-weekends").exit_code == 0
    assert date(2000, 4, 29) in stored_dates(empty_store)


@pytest.mark.parametrize("policy", ["refuse", "drop"])
def test_a_bar_dated_in_the_future_is_always_refused(policy, loaded, bundled_raw, write_csv, tmp_path):
    conn, before = loaded
    frame = bundled_raw.iloc[40:45].copy()
    frame.loc[frame.index[3], "Date"] = "2099-01-02"
    report = tmp_path / "dropped.csv"
    result = run("ingest", str(write_csv(frame)), "--on-invalid", policy, "--invalid-report", str(report))
    assert_refused(result, "dated in the future at line(s) 5", "2099-01-02")
    assert state(conn) == before
    assert not report.exists()


def test_a_file_of_only_implausible_bars_loads_nothing(loaded, bundled_raw, write_csv):
    conn, before = loaded
    frame = bundled_raw.iloc[40:42].copy()
    frame["Open"] = "100000"
    assert_refused(run("ingest", str(write_csv(frame)), "--on-invalid", "drop"), "every row is implausible")
    assert state(conn) == before


# --- item 7: symbols ----------------------------------------------------------------------------------


def test_a_nul_byte_is_refused_naming_the_line(loaded, bundled_raw, tmp_path):
    conn, before = loaded
    path = tmp_path / "nul.csv"
    text = bundled_raw.iloc[40:45].to_csv(index=False).replace("AAPL", "Z\x00AAPL", 1)
    path.write_bytes(text.encode())
    assert_refused(run("ingest", str(path)), "NUL byte at line 2")
    assert state(conn) == before


def test_control_characters_in_symbols_are_refused(loaded, bundled_raw, write_csv):
    conn, before = loaded
    frame = bundled_raw.iloc[40:45].copy()
    frame.loc[frame.index[2], "Ticker"] = "AA\x01PL"
    assert_refused(run("ingest", str(write_csv(frame))), "control character in symbol", "line(s) 4")
    assert state(conn) == before


def test_a_parquet_null_symbol_is_refused_not_stored_as_none(loaded, bundled_raw, tmp_path):
    conn, before = loaded
    frame = bundled_raw.iloc[40:45].copy()
    frame["Ticker"] = frame["Ticker"].astype(object)
    frame.loc[frame.index[2], "Ticker"] = None
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    assert_refused(run("ingest", str(path)), "empty symbol in column 'Ticker' at line(s) 4")
    assert state(conn) == before
    assert conn.execute(f"SELECT count(*) FROM {OHLCV} WHERE symbol = 'NONE'").fetchone()[0] == 0


def test_an_over_long_symbol_is_refused(loaded, bundled_raw, write_csv):
    conn, before = loaded
    frame = bundled_raw.iloc[40:45].copy()
    frame.loc[frame.index[0], "Ticker"] = "X" * 4000
    assert_refused(run("ingest", str(write_csv(frame))), "longer than 32 characters", "line(s) 2", "4000 characters")
    assert state(conn) == before


# --- item 9: a truncated file -------------------------------------------------------------------------


def test_a_truncated_gzip_is_named_not_aborted(loaded, tmp_path):
    conn, before = loaded
    data = BUNDLED_DATA.read_bytes()
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    message = assert_refused(run("ingest", str(path)), str(path), "truncated or corrupt")
    assert "Aborted" not in message
    assert state(conn) == before
    process = run_module("ingest", str(path), check=False)  # as a user runs it: exit code and stderr
    assert process.returncode == 2 and "truncated or corrupt" in process.stderr and "Aborted" not in process.stderr
    assert "Traceback" not in process.stderr
    assert state(conn) == before


def test_a_corrupt_gzip_is_named(loaded, tmp_path):
    conn, before = loaded
    data = bytearray(gzip.compress(BUNDLED_DATA.read_bytes()[:0] + b"Ticker,Date\n" + b"A,2000-03-01\n" * 500))
    data[30:60] = np.full(30, 0x41, dtype=np.uint8).tobytes()
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(bytes(data))
    assert_refused(run("ingest", str(path)), "truncated or corrupt")
    assert state(conn) == before


@pytest.mark.parametrize(
    ("date_format", "message"),
    [("%Q", "is not a valid strptime format"), ("%Y-%m-%d %H:%M", "has time directive(s) %H, %M")],
)
def test_a_bad_date_format_option_is_named(date_format, message, loaded, bundled_raw, write_csv):
    conn, before = loaded
    assert_refused(run("ingest", str(write_csv(bundled_raw.iloc[40:45])), "--date-format", date_format), message)
    assert state(conn) == before
