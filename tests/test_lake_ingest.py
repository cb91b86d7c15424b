"""``ingest`` with OHLCV_ENGINE=spark applies the PostgreSQL load's rules to the lake: same files, same tables,
same answers.

One scenario runs every step against both engines (the scratch PostgreSQL database and a lake folder, Spark
local[2]): the summary line or the one-line refusal must be identical, and so must the stored bars after each
step, created_timestamp renewals included (a row is re-created in one store exactly when it is in the other),
and so must the versions each store kept (a correction, a re-stamp: the same replaced bars in PostgreSQL's
history table and in the lake's history dataset). A re-ingest and a refused file leave every file of the lake
untouched.
"""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from training.cli import cli
from training.ingestion.load_rules import STORED_COLUMNS

KEY = ["symbol", "trade_date"]
TIMES = ("created_timestamp", "superseded_timestamp")


def _run(*args: str, engine: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["ingest", *args], env={"OHLCV_ENGINE": engine}, catch_exceptions=False)
    return result.exit_code, result.output.strip()


def _postgres_bars(conn) -> pd.DataFrame:
    if conn.execute("SELECT to_regclass('market_data.ohlcv_daily')").fetchone()[0] is None:
        return _normalised(pd.DataFrame(columns=[*STORED_COLUMNS, "created_timestamp"]))
    cursor = conn.execute(f"SELECT {', '.join(STORED_COLUMNS)}, created_timestamp FROM market_data.ohlcv_daily")
    return _normalised(pd.DataFrame(cursor.fetchall(), columns=[*STORED_COLUMNS, "created_timestamp"]))


def _lake_bars(root) -> pd.DataFrame:
    if not (root / "bars").exists():
        return _normalised(pd.DataFrame(columns=[*STORED_COLUMNS, "created_timestamp"]))
    return _normalised(pd.read_parquet(root / "bars").drop(columns="bucket"))


def _postgres_history(conn) -> pd.DataFrame:
    if conn.execute("SELECT to_regclass('market_data.ohlcv_daily_history')").fetchone()[0] is None:
        return _versions(pd.DataFrame(columns=[*STORED_COLUMNS, *TIMES]))
    cursor = conn.execute(
        f"SELECT {', '.join(STORED_COLUMNS)}, {', '.join(TIMES)} FROM market_data.ohlcv_daily_history"
    )
    return _versions(pd.DataFrame(cursor.fetchall(), columns=[*STORED_COLUMNS, *TIMES]))


def _lake_history(root) -> pd.DataFrame:
    if not (root / "bars_history").exists():
        return _versions(pd.DataFrame(columns=[*STORED_COLUMNS, *TIMES]))
    return _versions(pd.read_parquet(root / "bars_history").drop(columns="bucket"))


def _versions(frame: pd.DataFrame) -> pd.DataFrame:
    """The replaced versions' values (each store stamps with its own clock: times compared within a store)."""
    frame = _normalised(frame)
    assert (pd.to_datetime(frame["superseded_timestamp"], utc=True) >= frame["created_timestamp"]).all()
    return frame[list(STORED_COLUMNS)].sort_values(list(STORED_COLUMNS)).reset_index(drop=True)


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in ("event_timestamp", "created_timestamp"):
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    frame["trade_date"] = pd.to_datetime(frame["trade_date"]).astype("datetime64[s]")
    frame["symbol"] = frame["symbol"].astype(str)
    for column in STORED_COLUMNS[3:]:
        frame[column] = frame[column].astype("float64")
    return frame.sort_values(KEY).reset_index(drop=True)


def _files(root) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def both(empty_store, spark, tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    monkeypatch.setenv("OHLCV_LAKE", str(lake))
    return empty_store, lake


def _step(both, *args: str) -> tuple[int, str]:
    """One ingest into each store; the answers and the stored bars (up to creation instants) must be equal."""
    conn, lake = both
    before_pg, before_lake = _postgres_bars(conn), _lake_bars(lake)
    answer = _run(*args, engine="postgres")
    assert _run(*args, engine="spark") == answer
    after_pg, after_lake = _postgres_bars(conn), _lake_bars(lake)
    values = [c for c in after_pg.columns if c != "created_timestamp"]
    pd.testing.assert_frame_equal(after_lake[values], after_pg[values], check_exact=True)
    assert _renewed(before_lake, after_lake) == _renewed(before_pg, after_pg)
    pd.testing.assert_frame_equal(_lake_history(lake), _postgres_history(conn), check_exact=True)
    return answer


def _renewed(before: pd.DataFrame, after: pd.DataFrame) -> set[tuple]:
    """Keys whose row was (re)created by the step: new, or with another created_timestamp than before."""
    merged = after.merge(before[[*KEY, "created_timestamp"]], on=KEY, how="left", suffixes=("", "_before"))
    changed = merged["created_timestamp"] != merged["created_timestamp_before"]
    return set(map(tuple, merged.loc[changed, KEY].astype(str).to_numpy()))


def test_the_lake_load_follows_the_postgres_rules(both, bundled_raw, write_csv):
    _, lake = both
    two = bundled_raw[bundled_raw["Ticker"].isin(["AAPL", "IBM"])]
    first = pd.concat([g.iloc[:60] for _, g in two.groupby("Ticker")])
    code, answer = _step(both, str(write_csv(first, "first.csv")))
    assert code == 0 and "120 inserted, 0 updated" in answer

    files = _files(lake)
    code, answer = _step(both, str(write_csv(first, "first.csv")))
    assert code == 0 and "0 inserted, 0 updated, 120 unchanged" in answer
    assert _files(lake) == files  # a no-op re-ingest writes nothing

    corrected = first.drop(columns=["Adj Close"]).iloc[10:40].copy()  # no adjusted close: stored factors apply
    row = corrected.index[0]
    corrected.loc[row, "Close"] = repr((float(corrected.loc[row, "Low"]) + float(corrected.loc[row, "High"])) / 2)
    code, answer = _step(both, str(write_csv(corrected, "corrected.csv")))
    assert code == 0 and "0 inserted, 1 updated, 29 unchanged" in answer
    assert len(_lake_history(lake)) == 1  # the corrected bar's earlier version

    twins = pd.concat([first.iloc[:3], first.iloc[[1]]])
    code, answer = _step(both, str(write_csv(twins, "twins.csv")))
    assert code == 2 and "duplicate (symbol, date) rows at line(s) 3, 5" in answer

    code, answer = _step(both, str(write_csv(first.iloc[:5], "late.csv")), "--session-close", "16:30")
    assert code == 0 and "5 updated (5 re-stamped)" in answer
    assert len(_lake_history(lake)) == 6  # and the five bars at their old stamps

    aapl = first[first["Ticker"] == "AAPL"]  # 2000-03-01 is now stored at 16:30 New York = 21:30 UTC
    taken = write_csv(aapl.iloc[[1]], "taken.csv")  # 2000-03-02 11:30 at UTC+14: that same instant
    code, answer = _step(both, str(taken), "--exchange-tz", "Pacific/Kiritimati", "--session-close", "11:30")
    assert code == 2 and "AAPL 2000-03-02 would be stamped" in answer and "stored for AAPL 2000-03-01" in answer

    raw_tail = pd.concat([g.iloc[55:70] for _, g in two.groupby("Ticker")]).drop(columns=["Adj Close"])
    files = _files(lake)
    code, answer = _step(both, str(write_csv(raw_tail, "raw.csv")))
    assert code == 2 and "mix of split/dividend-adjusted and raw bars" in answer
    assert _files(lake) == files  # a refused file writes nothing
    code, answer = _step(both, str(write_csv(raw_tail, "raw.csv")), "--allow-mixed-adjustment")
    assert code == 0 and "20 inserted" in answer


def test_the_lake_refuses_a_vendors_as_of_column_and_writes_nothing(both, write_csv):
    _, lake = both
    bars = pd.DataFrame(
        {"Ticker": "ZZZ", "Date": ["2020-01-02", "2020-01-03"], "Open": "10", "High": "11", "Low": "9",
         "Close": "10.5", "Volume": "1000", "Adj Close": "5.25", "As Of": "2020-01-06T00:00:00Z"}
    )  # fmt: skip
    code, answer = _run(str(write_csv(bars, "as_of.csv")), engine="spark")
    assert code == 2 and "as-of column" in answer and "OHLCV_ENGINE unset" in answer, answer
    assert _lake_bars(lake).empty
