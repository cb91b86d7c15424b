"""The audit's own bar reader (training/leakage/bars.py) reads what is stored, as the SPEC defines adjusted bars.

It shares no code with the builder's readers, so it is held to theirs on real stores instead: on PostgreSQL
and on the lake (written by ``ingest`` with OHLCV_ENGINE=spark, read back with Arrow alone) it returns the
same adjusted bars, value for value, as the builder's reader of that store; a symbol the store lacks is
refused in one line.
"""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from training.cli import cli
from training.dataset.offline_bars import load_bars
from training.errors import InputError
from training.leakage.bars import bar_reader, read_lake

COLUMNS = ["symbol", "event_timestamp", "open", "high", "low", "close", "volume"]


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[COLUMNS].sort_values(["symbol", "event_timestamp"]).reset_index(drop=True)
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
    return out.astype({c: "float64" for c in COLUMNS[2:]})


def test_the_audit_reads_postgres_bars_as_the_builder_does(pipeline):
    symbols = ["AAPL", "FB", "MSFT"]
    with bar_reader(symbols) as read:
        mine = read(["FB", "MSFT"])
    assert list(mine["symbol"].unique()) == ["FB", "MSFT"]
    pd.testing.assert_frame_equal(_comparable(mine), _comparable(load_bars(["FB", "MSFT"])), check_exact=True)


def test_a_symbol_the_store_lacks_is_refused_in_one_line(pipeline):
    refusal = r"the offline store has no bars of NOPE, which the dataset holds"
    with pytest.raises(InputError, match=refusal), bar_reader(["AAPL", "NOPE"]):
        pass


def test_the_audit_reads_the_lake_with_arrow_as_the_spark_reader_does(empty_store, spark, bundled_raw, write_csv,
                                                                      tmp_path, monkeypatch):  # fmt: skip
    from training.engines.spark.lake_bars import read_bars as spark_read_bars

    lake = tmp_path / "lake"
    monkeypatch.setenv("OHLCV_LAKE", str(lake))
    monkeypatch.setenv("OHLCV_ENGINE", "spark")
    two = bundled_raw[bundled_raw["Ticker"].isin(["AAPL", "IBM"])]
    rows = pd.concat([g.iloc[:80] for _, g in two.groupby("Ticker")])
    result = CliRunner().invoke(cli, ["ingest", str(write_csv(rows))], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    mine = read_lake(str(lake), ["IBM"])
    assert len(mine) == 80 and set(mine["symbol"]) == {"IBM"}
    pd.testing.assert_frame_equal(_comparable(mine), _comparable(spark_read_bars(spark, ["IBM"])), check_exact=True)
    with bar_reader(["AAPL", "IBM"]) as read:
        both = read(["AAPL", "IBM"])
        with pytest.raises(InputError, match="no bars of MSFT"):
            read(["MSFT"])
    pd.testing.assert_frame_equal(_comparable(both), _comparable(spark_read_bars(spark, None)), check_exact=True)
