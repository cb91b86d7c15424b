"""As known at: every bar and feature version is kept with the time it became known, and `build-dataset
--known-at` rebuilds a dataset exactly as it was built, after corrections, re-adjustments and new sessions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli, run_module
from training.dataset import artifact
from training.indicators.feature_table import FEATURE_ROW_COLUMNS, FEATURES_HISTORY_TABLE, FEATURES_TABLE
from training.infra import db
from training.infra.adjustments import ADJUSTMENTS_TABLE, bars_known_at
from training.infra.schema import OHLCV_HISTORY_TABLE, OHLCV_TABLE, OHLCV_VERSION_COLUMNS
from training.infra.versions import known_at_relation

SYMBOLS = "AAPL,IBM"
LATER_SESSIONS = 10
BAR_VERSION = (*OHLCV_VERSION_COLUMNS, "created_timestamp")
EDITED = ("Close", "Adj Close", "Volume")


def _ok(*args: str) -> str:
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result.output


def _count(conn, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _snapshot(conn, table: str, columns) -> pd.DataFrame:
    """Every row of ``table`` (or of a relation) by key, the columns given, as stored."""
    query = f"SELECT {', '.join(columns)} FROM {table} AS t ORDER BY symbol, event_timestamp"
    return db.copy_out(conn, query, {}, parse_dates=["event_timestamp", "created_timestamp"])


def _both(conn) -> list[pd.DataFrame]:
    return [_snapshot(conn, OHLCV_TABLE, BAR_VERSION), _snapshot(conn, FEATURES_TABLE, FEATURE_ROW_COLUMNS)]


def _as_known(conn, table: str, columns, at: datetime) -> pd.DataFrame:
    """``table`` as known at ``at``, through the readers' own relation (bars: re-adjustments undone)."""
    relation = bars_known_at if table == OHLCV_TABLE else known_at_relation
    return _snapshot(conn, relation(table, columns, at), columns)


def _dividend(raw: pd.DataFrame, symbol: str, before: str, factor: float) -> pd.DataFrame:
    """The vendor's restatement after a dividend: every earlier adjusted close of ``symbol`` scaled."""
    restated = raw.copy()
    earlier = (restated["Ticker"] == symbol) & (restated["Date"] < before)
    restated.loc[earlier, "Adj Close"] = (restated.loc[earlier, "Adj Close"].astype(float) * factor).map(repr)
    return restated


@pytest.fixture
def history(empty_store, bundled_raw, write_csv):
    """The two symbols' bars but the last sessions, features computed, Feast applied: (all rows, later days)."""
    raw = bundled_raw[bundled_raw["Ticker"].isin(SYMBOLS.split(","))].reset_index(drop=True)
    later = sorted(raw["Date"].unique())[-LATER_SESSIONS:]
    _ok("ingest", str(write_csv(raw[~raw["Date"].isin(later)], "history.csv")))
    _ok("compute-features")
    run_module("feast", "apply")
    return raw, later


def test_a_no_op_re_ingest_and_recompute_write_no_version(history, empty_store, write_csv):
    raw, later = history
    before = [
        _snapshot(empty_store, OHLCV_TABLE, BAR_VERSION),
        _snapshot(empty_store, FEATURES_TABLE, FEATURE_ROW_COLUMNS),
    ]
    output = _ok("ingest", str(write_csv(raw[~raw["Date"].isin(later)], "again.csv")))
    assert "0 inserted, 0 updated" in output, output
    _ok("compute-features")
    assert (_count(empty_store, OHLCV_HISTORY_TABLE), _count(empty_store, FEATURES_HISTORY_TABLE)) == (0, 0)
    after = [
        _snapshot(empty_store, OHLCV_TABLE, BAR_VERSION),
        _snapshot(empty_store, FEATURES_TABLE, FEATURE_ROW_COLUMNS),
    ]
    for old, new in zip(before, after, strict=True):
        pd.testing.assert_frame_equal(old, new, check_exact=True)


def test_a_correction_keeps_the_replaced_bar_and_feature_versions(history, empty_store, write_csv):
    raw, later = history
    kept = raw[~raw["Date"].isin(later)].reset_index(drop=True)
    at = empty_store.execute("SELECT statement_timestamp()").fetchone()[0]
    old_bars = _snapshot(empty_store, OHLCV_TABLE, BAR_VERSION)
    corrected = kept.copy()
    row = corrected.index[(corrected["Ticker"] == "IBM") & (corrected["Date"] == "2010-06-01")][0]
    corrected.loc[row, "Close"] = repr(float(corrected.loc[row, "Close"]) * 1.01)
    output = _ok("ingest", str(write_csv(corrected, "corrected.csv")))
    assert "1 updated" in output, output
    versions = _snapshot(empty_store, OHLCV_HISTORY_TABLE, (*BAR_VERSION, "superseded_timestamp"))
    assert len(versions) == 1
    old = old_bars[(old_bars["symbol"] == "IBM") & (old_bars["event_timestamp"] == versions["event_timestamp"][0])]
    pd.testing.assert_frame_equal(versions[list(BAR_VERSION)], old.reset_index(drop=True), check_exact=True)
    new_created = empty_store.execute(
        f"SELECT created_timestamp FROM {OHLCV_TABLE} WHERE symbol = 'IBM' AND trade_date = '2010-06-01'"
    ).fetchone()[0]
    assert versions["superseded_timestamp"][0] == pd.Timestamp(new_created)
    # The bars as known before the correction are exactly the bars stored then; the default view is the new one.
    pd.testing.assert_frame_equal(_as_known(empty_store, OHLCV_TABLE, BAR_VERSION, at), old_bars, check_exact=True)
    features_before = _snapshot(empty_store, FEATURES_TABLE, FEATURE_ROW_COLUMNS)
    _ok("compute-features")
    replaced = _count(empty_store, FEATURES_HISTORY_TABLE)
    assert replaced > 0  # the corrected bar's row and the recursive indicators after it
    assert _count(empty_store, FEATURES_TABLE) == len(features_before)
    pd.testing.assert_frame_equal(
        _as_known(empty_store, FEATURES_TABLE, FEATURE_ROW_COLUMNS, at), features_before, check_exact=True
    )


def test_build_known_at_the_first_build_gives_its_fingerprint_after_corrections_re_adjustments_and_sessions(
    history, empty_store, write_csv, tmp_path
):
    raw, _ = history
    _ok("build-dataset", "--symbols", SYMBOLS, "--out", str(tmp_path / "first"))
    first = artifact.load(tmp_path / "first")
    known_at = first.metadata["known_at"]
    assert known_at is not None
    # A vendor correction of an old bar, a dividend restating IBM's adjusted history, and later sessions.
    changed = _dividend(raw, "IBM", "2012-11-07", 0.99)
    row = changed.index[(changed["Ticker"] == "AAPL") & (changed["Date"] == "2008-03-03")][0]
    changed.loc[row, "High"] = repr(float(changed.loc[row, "High"]) * 1.02)
    output = _ok("ingest", str(write_csv(changed, "restated.csv")))
    _ok("compute-features")
    # IBM's restated adjusted history is one adjustment event (and no bar of it a history row); AAPL's bar is one.
    assert "3192 re-adjusted" in output, output
    assert _count(empty_store, ADJUSTMENTS_TABLE) == 1
    assert _count(empty_store, OHLCV_HISTORY_TABLE) == 1
    _ok("build-dataset", "--symbols", SYMBOLS, "--out", str(tmp_path / "now"))
    now = artifact.load(tmp_path / "now")
    assert now.metadata["fingerprint"] != first.metadata["fingerprint"]
    _ok("build-dataset", "--symbols", SYMBOLS, "--known-at", known_at, "--out", str(tmp_path / "again"))
    again = artifact.load(tmp_path / "again")
    assert again.metadata["fingerprint"] == first.metadata["fingerprint"]
    assert again.metadata["known_at"] == known_at
    pd.testing.assert_frame_equal(again.frame, first.frame, check_exact=True)
    # The audit's own bar reader reads the bars of that time too.
    from training.leakage.bars import bar_reader

    with bar_reader(["IBM"], known_at) as read_then, bar_reader(["IBM"]) as read_now:
        then, newest = read_then(["IBM"]), read_now(["IBM"])
    assert len(then) == len(newest) - LATER_SESSIONS
    assert not then["close"].equals(newest["close"].iloc[: len(then)].reset_index(drop=True))
    stored = json.loads((tmp_path / "again" / artifact.METADATA_FILE).read_text())
    assert stored["known_at"] == known_at


def test_known_at_in_the_future_or_not_a_time_is_refused(history, tmp_path):
    later = (datetime.now().astimezone() + timedelta(hours=1)).isoformat()
    result = run_cli("build-dataset", "--symbols", SYMBOLS, "--known-at", later, "--out", str(tmp_path / "d"))
    assert result.exit_code != 0 and "is later than the database's clock" in result.output, result.output
    result = run_cli("build-dataset", "--known-at", "yesterday", "--out", str(tmp_path / "d"))
    assert result.exit_code == 2 and "is not an ISO 8601 time" in result.output, result.output
    assert not (tmp_path / "d").exists()


def test_a_database_from_before_versioning_keeps_working(history, empty_store, write_csv, tmp_path):
    """An existing database has no history tables: builds (as known at a time too) read its rows as they are,
    and the next write creates the history table."""
    raw, later = history
    empty_store.execute(f"DROP TABLE {OHLCV_HISTORY_TABLE}, {ADJUSTMENTS_TABLE}, {FEATURES_HISTORY_TABLE}")
    _ok("build-dataset", "--symbols", SYMBOLS, "--out", str(tmp_path / "old"))
    old = artifact.load(tmp_path / "old")
    _ok("build-dataset", "--symbols", SYMBOLS, "--known-at", old.metadata["known_at"], "--out", str(tmp_path / "at"))
    assert artifact.load(tmp_path / "at").metadata["fingerprint"] == old.metadata["fingerprint"]
    _ok("ingest", str(write_csv(_dividend(raw[~raw["Date"].isin(later)], "IBM", "2012-11-07", 0.99), "r.csv")))
    assert (_count(empty_store, ADJUSTMENTS_TABLE), _count(empty_store, OHLCV_HISTORY_TABLE)) == (1, 0)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from([*EDITED, "none", "re-adjust"]), st.floats(0.5, 2.0)),
        min_size=1,
        max_size=4,
    )
)
def test_the_bars_as_known_at_any_past_write_are_the_bars_stored_then(empty_store, write_csv, edits):
    """Property: after any sequence of loads (corrections, re-adjustments of one bar or of every bar before one,
    no-ops) the bars as known at the moment after each load equal the table as it stood then, and a no-op load
    adds no version."""
    from training.ingestion.bar_files import clean_bars
    from training.ingestion.upsert import upsert_bars

    empty_store.execute(f"DROP TABLE IF EXISTS {OHLCV_TABLE}, {OHLCV_HISTORY_TABLE}, {ADJUSTMENTS_TABLE}")
    days = pd.bdate_range("2020-01-01", periods=6).strftime("%Y-%m-%d")
    frame = pd.DataFrame(
        {
            "Ticker": "ZZZ",
            "Date": days,
            "Open": 10.0,
            "High": 11.0,
            "Low": 9.0,
            "Close": 10.5,
            "Volume": 1000.0,
            "Adj Close": 5.25,
        }
    )
    snapshots = []
    for day, column, factor in [(0, "none", 1.0), *edits]:
        if column == "re-adjust":  # a dividend: every adjusted close before ``day`` restated, as a vendor prints it
            earlier = frame.index < max(day, 2)
            restated = frame.loc[earlier, "Adj Close"] * factor
            frame.loc[earlier, "Adj Close"] = restated.map(lambda v: float(f"{v:.14g}"))
        elif column != "none":
            frame.loc[day, column] = frame.loc[day, column] * factor
            frame.loc[day, "High"] = max(frame.loc[day, ["Open", "High", "Close"]])
            frame.loc[day, "Low"] = min(frame.loc[day, ["Open", "Low", "Close"]])
        versions = _count(empty_store, OHLCV_HISTORY_TABLE) if snapshots else 0
        result = upsert_bars(clean_bars(frame.copy()).bars)
        if snapshots and result.updated == 0:
            assert _count(empty_store, OHLCV_HISTORY_TABLE) == versions
        at = empty_store.execute("SELECT clock_timestamp()").fetchone()[0]
        snapshots.append((at, _snapshot(empty_store, OHLCV_TABLE, BAR_VERSION)))
    for at, stored in snapshots:
        pd.testing.assert_frame_equal(_as_known(empty_store, OHLCV_TABLE, BAR_VERSION, at), stored, check_exact=True)


def test_two_dividends_a_backfilled_bar_a_correction_and_a_gapped_restatement_read_back_as_stored(empty_store):
    """The event rules' edge cases, each load's table read back as known just after it: a second dividend over
    the first's events, a bar inserted later inside an event's range (absent before its insert), a correction of
    an evented bar, and a restatement whose run would span a stored bar the file lacks (archived per bar)."""
    from training.ingestion.bar_files import clean_bars
    from training.ingestion.upsert import upsert_bars

    empty_store.execute(f"DROP TABLE IF EXISTS {OHLCV_TABLE}, {OHLCV_HISTORY_TABLE}, {ADJUSTMENTS_TABLE}")
    days = pd.bdate_range("2020-01-01", periods=20).strftime("%Y-%m-%d")
    frame = pd.DataFrame({"Ticker": "ZZZ", "Date": days, "Open": 10.0, "High": 11.0, "Low": 9.0, "Close": 10.5,
                          "Volume": 1000.0, "Adj Close": [5.25 + 0.013 * i for i in range(20)]})  # fmt: skip

    def restate(rows, factor: float) -> None:
        frame.loc[rows, "Adj Close"] = (frame.loc[rows, "Adj Close"] * factor).map(lambda v: float(f"{v:.14g}"))

    snapshots = []

    def load(rows) -> None:
        upsert_bars(clean_bars(frame.loc[rows].reset_index(drop=True)).bars)
        at = empty_store.execute("SELECT clock_timestamp()").fetchone()[0]
        snapshots.append((at, _snapshot(empty_store, OHLCV_TABLE, BAR_VERSION)))

    everything, without_10 = list(range(20)), [i for i in range(20) if i != 10]
    load(without_10)
    restate(frame.index < 15, 0.98)
    load(without_10)
    assert _count(empty_store, ADJUSTMENTS_TABLE) >= 1
    load(everything)  # day 10 backfilled inside the first event's range
    restate(frame.index < 18, 0.5)
    load(everything)
    frame.loc[3, "Close"] = 10.25
    load(everything)
    events = _count(empty_store, ADJUSTMENTS_TABLE)
    restate(frame.index != 6, 0.97)
    load([i for i in range(20) if i != 6])  # day 6 stored but not in the file: no event may cover it
    covering = empty_store.execute(
        f"SELECT count(*) FROM {ADJUSTMENTS_TABLE} a JOIN {OHLCV_TABLE} t ON t.symbol = a.symbol "
        "AND t.event_timestamp BETWEEN a.first_timestamp AND a.last_timestamp "
        f"WHERE t.trade_date = '{days[6]}' AND a.created_timestamp > %s",
        (snapshots[-2][0],),
    ).fetchone()[0]
    assert covering == 0 and _count(empty_store, ADJUSTMENTS_TABLE) > events
    for at, stored in snapshots:
        pd.testing.assert_frame_equal(_as_known(empty_store, OHLCV_TABLE, BAR_VERSION, at), stored, check_exact=True)
