"""Ingest against real PostgreSQL: one bar per (symbol, trade date), no-op re-runs, adjusted prices never
erased or mixed, concurrent loads serialised, and re-stamped bars reaching the features table."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import BUNDLED_DATA
from tests.hypertables import row_counters, row_versions, settle_compression
from training.cli import cli
from training.infra import db
from training.ingestion.bar_files import clean_bars
from training.ingestion.upsert import INGEST_LOCK_KEY, upsert_bars

OHLCV = "market_data.ohlcv_daily"
FEATURES = "features.technical_indicators"
ALL_BARS = 12154


def run(*args: str):
    return CliRunner().invoke(cli, [*args], catch_exceptions=False)


def state(conn, table: str = OHLCV) -> tuple[int, str | None]:
    """Row count and a checksum of every stored value (created_timestamp included)."""
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return 0, None
    return conn.execute(
        f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY symbol, event_timestamp)) FROM {table} t"
    ).fetchone()


def assert_refused(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def ingest_ok(*args: str) -> str:
    result = run("ingest", *args)
    assert result.exit_code == 0, result.output
    return result.output


# --- item 1: one bar per (symbol, trading date) -------------------------------------------------------


def test_a_new_session_close_restamps_bars_and_features_follow(empty_store):
    ingest_ok(str(BUNDLED_DATA))
    assert run("compute-features").exit_code == 0
    old_stamps = empty_store.execute(f"SELECT symbol, event_timestamp FROM {OHLCV}").fetchall()
    rsi_before = empty_store.execute(
        f"SELECT f.rsi_14 FROM {FEATURES} f JOIN {OHLCV} o USING (symbol, event_timestamp) "
        "WHERE o.symbol = 'IBM' AND o.trade_date = '2010-06-01'"
    ).fetchone()[0]

    output = ingest_ok(str(BUNDLED_DATA), "--session-close", "16:01")
    assert f"0 inserted, {ALL_BARS} updated ({ALL_BARS} re-stamped), 0 unchanged" in output
    rows, dates, at_1601 = empty_store.execute(
        f"SELECT count(*), count(DISTINCT (symbol, trade_date)), "
        f"count(*) FILTER (WHERE (event_timestamp AT TIME ZONE 'America/New_York')::time = '16:01') FROM {OHLCV}"
    ).fetchone()
    assert rows == dates == at_1601 == ALL_BARS

    features = run("compute-features")
    assert features.exit_code == 0, features.output
    count, orphans, missing, at_old = empty_store.execute(
        f"""SELECT (SELECT count(*) FROM {FEATURES}),
                   (SELECT count(*) FROM {FEATURES} f LEFT JOIN {OHLCV} o USING (symbol, event_timestamp)
                    WHERE o.symbol IS NULL),
                   (SELECT count(*) FROM {OHLCV} o LEFT JOIN {FEATURES} f USING (symbol, event_timestamp)
                    WHERE f.symbol IS NULL),
                   (SELECT count(*) FROM {FEATURES} f
                    WHERE (f.symbol, f.event_timestamp) IN (SELECT * FROM unnest(%s::text[], %s::timestamptz[])))""",
        ([s for s, _ in old_stamps], [t for _, t in old_stamps]),
    ).fetchone()
    assert (count, orphans, missing, at_old) == (ALL_BARS, 0, 0, 0)
    rsi_after = empty_store.execute(
        f"SELECT f.rsi_14 FROM {FEATURES} f JOIN {OHLCV} o USING (symbol, event_timestamp) "
        "WHERE o.symbol = 'IBM' AND o.trade_date = '2010-06-01'"
    ).fetchone()[0]
    assert rsi_after == rsi_before  # same bars, new stamps: same values


def test_duplicate_stamps_left_by_earlier_versions_are_collapsed(empty_store, bundled_raw, write_csv):
    path = write_csv(bundled_raw.head(40))
    ingest_ok(str(path))
    # What the old (symbol, event_timestamp) key allowed: a second copy of some bars at 16:01.
    empty_store.execute(
        f"INSERT INTO {OHLCV} SELECT symbol, event_timestamp + interval '1 minute', trade_date, open, high, low, "
        f"close, volume, adj_open, adj_high, adj_low, adj_close, adj_volume, created_timestamp FROM {OHLCV} "
        "WHERE trade_date < '2000-03-10'"
    )
    output = ingest_ok(str(path))
    assert "0 inserted, 7 updated (7 re-stamped), 33 unchanged" in output
    assert empty_store.execute(
        f"SELECT count(*), count(DISTINCT (symbol, trade_date)), "
        f"bool_and((event_timestamp AT TIME ZONE 'America/New_York')::time = '16:00') FROM {OHLCV}"
    ).fetchone() == (40, 40, True)


def _wait_for_stats(conn, ready, timeout: float = 20.0) -> tuple[int, int, int, int]:
    """Statistics reach pg_stat_user_tables when the ingest's backend flushes them (at the latest on exit)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = row_counters(conn, OHLCV)
        if ready(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def test_a_no_op_reingest_creates_no_row_versions(empty_store):
    ingest_ok(str(BUNDLED_DATA))
    settle_compression(empty_store, OHLCV)
    before = _wait_for_stats(empty_store, lambda s: s[0] >= ALL_BARS)
    assert before[:3] == (ALL_BARS, 0, 0)
    versions = row_versions(empty_store, OHLCV)

    output = ingest_ok(str(BUNDLED_DATA))
    assert f"0 inserted, 0 updated, {ALL_BARS} unchanged" in output
    after = _wait_for_stats(empty_store, lambda s: s[3] > before[3])  # the re-ingest read the table
    assert after[3] > before[3], "the re-ingest's statistics never arrived"
    assert after[:3] == before[:3]  # no insert, update or delete
    assert row_versions(empty_store, OHLCV) == versions


# --- item 2: a column absent from the file never erases stored values ----------------------------------


def test_a_file_without_adjusted_close_keeps_stored_adjustments(empty_store, bundled_raw, write_csv):
    ingest_ok(str(BUNDLED_DATA))
    before = state(empty_store)
    overlap = bundled_raw[bundled_raw["Date"].between("2009-08-01", "2010-07-31")].drop(columns=["Adj Close"])
    output = ingest_ok(str(write_csv(overlap)))
    assert f"0 inserted, 0 updated, {len(overlap)} unchanged" in output
    assert state(empty_store) == before

    corrected = overlap.copy()
    first = corrected.index[0]
    new_close = (float(corrected.loc[first, "Low"]) + float(corrected.loc[first, "High"])) / 2
    assert new_close != float(corrected.loc[first, "Close"])
    corrected.loc[first, "Close"] = repr(new_close)
    output = ingest_ok(str(write_csv(corrected)))
    assert "0 inserted, 1 updated" in output
    symbol, day = corrected.loc[first, "Ticker"], corrected.loc[first, "Date"]
    close, adj_close, adj_open, open_ = empty_store.execute(
        f"SELECT close, adj_close, adj_open, open FROM {OHLCV} WHERE symbol = %s AND trade_date = %s", (symbol, day)
    ).fetchone()
    stored_factor = float(bundled_raw.loc[first, "Adj Close"]) / float(bundled_raw.loc[first, "Close"])
    assert close == new_close
    assert adj_close / close == pytest.approx(stored_factor, rel=1e-12)
    assert adj_open / open_ == pytest.approx(stored_factor, rel=1e-12)
    assert empty_store.execute(f"SELECT count(*) FROM {OHLCV} WHERE adj_close IS NULL").fetchone()[0] == 0


def _aapl(raw: pd.DataFrame, rows: slice) -> pd.DataFrame:
    return raw[raw["Ticker"] == "AAPL"].iloc[rows]


def test_new_raw_bars_beside_adjusted_ones_are_refused_unless_allowed(empty_store, bundled_raw, write_csv):
    ingest_ok(str(write_csv(_aapl(bundled_raw, slice(0, 40)), "adjusted.csv")))
    before = state(empty_store)
    raw_only = write_csv(_aapl(bundled_raw, slice(30, 60)).drop(columns=["Adj Close"]), "raw.csv")
    refused = run("ingest", str(raw_only))
    assert_refused(refused, "1 symbol(s)", "AAPL (40 adjusted, 20 raw)", "--allow-mixed-adjustment")
    assert state(empty_store) == before
    output = ingest_ok(str(raw_only), "--allow-mixed-adjustment")
    assert "20 inserted, 0 updated, 10 unchanged" in output


def test_adjusted_bars_beside_stored_raw_ones_are_refused_naming_a_few_symbols(empty_store, bundled_raw, write_csv):
    aapl = _aapl(bundled_raw, slice(0, 20))
    panel = pd.concat([aapl.assign(Ticker=f"S{i}") for i in range(7)], ignore_index=True)
    ingest_ok(str(write_csv(panel.drop(columns=["Adj Close"]), "raw.csv")))
    before = state(empty_store)
    adjusted = write_csv(panel[panel["Date"] >= aapl["Date"].iloc[10]], "adjusted.csv")
    assert_refused(run("ingest", str(adjusted)), "7 symbol(s)", "S0 (10 adjusted, 10 raw)", "and 2 more")
    assert state(empty_store) == before
    # The whole history with its adjusted close replaces the raw series: nothing mixed, accepted.
    assert "140 updated" in ingest_ok(str(write_csv(panel, "all.csv")))


# --- item 2: concurrent ingests are serialised ---------------------------------------------------------


def test_an_ingest_waits_for_the_one_in_progress(empty_store, bundled_raw):
    bars = clean_bars(bundled_raw.head(30)).bars
    holder = db.connect()
    holder.execute("SELECT pg_advisory_xact_lock(%s)", (INGEST_LOCK_KEY,))
    worker = threading.Thread(target=upsert_bars, args=(bars,))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        waiting = 0
        while not waiting and time.monotonic() < deadline:
            waiting = empty_store.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()[0]
            time.sleep(0.1)
        assert waiting == 1 and worker.is_alive()
        assert state(empty_store)[0] == 0
    finally:
        holder.rollback()
        holder.close()
        worker.join(timeout=60)
    assert state(empty_store)[0] == 30


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_ingests_end_the_same_whatever_commits_first(round_, empty_store, bundled_raw):
    subset = bundled_raw[bundled_raw["Date"].between("2005-01-01", "2005-12-31")]
    files = [clean_bars(subset).bars, clean_bars(subset.drop(columns=["Adj Close"])).bars]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def load(bars: pd.DataFrame) -> None:
        start.wait()
        try:
            upsert_bars(bars)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(bars,)) for bars in (files if round_ % 2 else files[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    stored = empty_store.execute(
        f"SELECT count(*), count(adj_close), count(DISTINCT (symbol, trade_date)) FROM {OHLCV}"
    ).fetchone()
    assert stored == (len(subset), len(subset), len(subset))  # adjusted whichever came first


def test_a_stamp_already_taken_by_another_date_is_refused(empty_store, bundled_raw, write_csv):
    aapl = _aapl(bundled_raw, slice(0, 2))  # 2000-03-01 and 2000-03-02
    ingest_ok(str(write_csv(aapl.iloc[[0]], "first.csv")))  # 2000-03-01 16:00 New York = 21:00 UTC
    before = state(empty_store)
    # 2000-03-02 11:00 at UTC+14 is the same instant as the stored bar of 2000-03-01.
    result = run(
        "ingest", str(write_csv(aapl.iloc[[1]], "second.csv")), "--exchange-tz", "Pacific/Kiritimati",
        "--session-close", "11:00",
    )  # fmt: skip
    assert_refused(result, "AAPL 2000-03-02", "already stored for AAPL 2000-03-01", "--session-close")
    assert state(empty_store) == before
