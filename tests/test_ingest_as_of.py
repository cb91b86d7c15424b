"""A vendor's as-of column: each bar version's knowledge time is the file's, validated, instead of the ingest's."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import run_cli
from training.errors import InputError
from training.infra.schema import OHLCV_HISTORY_TABLE, OHLCV_TABLE
from training.ingestion.bar_files import clean_bars
from training.ingestion.upsert import upsert_bars

DAYS = pd.bdate_range("2020-01-01", periods=4).strftime("%Y-%m-%d")


def _file(column: str = "As Of") -> pd.DataFrame:
    return pd.DataFrame(
        {"Ticker": "ZZZ", "Date": DAYS, "Open": "10", "High": "11", "Low": "9", "Close": "10.5", "Volume": "1000",
         "Adj Close": "5.25", column: [f"{d}T22:30:00Z" for d in DAYS]}
    )  # fmt: skip


def _stored(conn, table: str = OHLCV_TABLE) -> list[tuple]:
    return conn.execute(f"SELECT * FROM {table} ORDER BY symbol, event_timestamp").fetchall()


def test_the_as_of_column_is_each_versions_knowledge_time(empty_store, write_csv):
    output = run_cli("ingest", str(write_csv(_file("knowledge_time"), "asof.csv"))).output
    assert "4 inserted" in output, output
    created = [row[0] for row in empty_store.execute(f"SELECT created_timestamp FROM {OHLCV_TABLE} ORDER BY 1")]
    assert created == [pd.Timestamp(f"{d}T22:30:00Z") for d in DAYS]
    corrected = _file()
    corrected.loc[0, ["Close", "As Of"]] = ["10.4", "2020-02-03T09:00:00+01:00"]
    assert upsert_bars(clean_bars(corrected).bars).updated == 1
    (old,) = empty_store.execute(f"SELECT created_timestamp, superseded_timestamp FROM {OHLCV_HISTORY_TABLE}")
    assert old == (pd.Timestamp("2020-01-01T22:30:00Z"), pd.Timestamp("2020-02-03T08:00:00Z"))
    new = empty_store.execute(f"SELECT created_timestamp FROM {OHLCV_TABLE} WHERE trade_date = '2020-01-01'").fetchone()
    assert new[0] == pd.Timestamp("2020-02-03T08:00:00Z")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2020-01-01T22:30:00", "knowledge time without a time zone"),
        ("2020-01-01T20:00:00Z", "knowledge time before the bar's session close"),
        ("2100-01-01T00:00:00Z", "knowledge time in the future"),
        ("", "missing knowledge time"),
        ("soon+01:00", "not an ISO 8601 time"),
    ],
)
def test_a_bad_knowledge_time_is_refused_and_nothing_is_written(empty_store, value, message):
    upsert_bars(clean_bars(_file()).bars)
    before = _stored(empty_store)
    bad = _file()
    bad.loc[0, ["Close", "As Of"]] = ["10.3", value]
    with pytest.raises(InputError, match=message):
        upsert_bars(clean_bars(bad).bars)
    assert _stored(empty_store) == before and _stored(empty_store, OHLCV_HISTORY_TABLE) == []


def test_a_version_known_before_the_stored_one_is_refused(empty_store):
    later = _file()
    later["As Of"] = "2020-03-01T00:00:00Z"
    upsert_bars(clean_bars(later).bars)
    before = _stored(empty_store)
    earlier = _file()
    earlier.loc[0, "Close"] = "10.3"
    with pytest.raises(InputError, match=r"ZZZ 2020-01-01 \(line 2: .*\) is before that of its stored version"):
        upsert_bars(clean_bars(earlier).bars)
    assert _stored(empty_store) == before and _stored(empty_store, OHLCV_HISTORY_TABLE) == []
