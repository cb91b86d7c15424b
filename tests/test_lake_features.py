"""``compute-features`` with OHLCV_ENGINE=spark fills the lake's features table with the PostgreSQL job's rows,
bit for bit, recomputes only what went stale, and writes nothing when nothing did."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import BUNDLED_DATA, run_ok
from training.cli import cli
from training.indicators.definitions import FEATURE_NAMES, REFERENCE_COLUMNS
from training.indicators.feature_table import FEATURES_TABLE
from training.infra import db

VALUES = (*FEATURE_NAMES, *REFERENCE_COLUMNS)


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
        run_ok("ingest", str(BUNDLED_DATA))
        run_ok("compute-features")
    return root


@pytest.fixture(scope="module")
def lake_project(lake, pipeline):
    """The Feast repository applied on the lake once, as its own project (registry in the lake, own online keys)."""
    from tests.conftest import run_module

    project = f"{pipeline}_lake"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OHLCV_LAKE", str(lake))
        patch.setenv("OHLCV_ENGINE", "spark")
        patch.setenv("FEAST_PROJECT", project)
        run_module("feast", "apply")
    return project


@pytest.fixture
def in_lake(lake, monkeypatch):
    monkeypatch.setenv("OHLCV_LAKE", str(lake))
    monkeypatch.setenv("OHLCV_ENGINE", "spark")
    return lake


@pytest.fixture
def lake_copy(lake, tmp_path, monkeypatch):
    """A copy of the module's lake, for a test that changes it."""
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    monkeypatch.setenv("OHLCV_LAKE", str(copy))
    monkeypatch.setenv("OHLCV_ENGINE", "spark")
    return copy


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
    assert "up to date, nothing to compute" in run_ok("compute-features")
    assert _files(in_lake) == files


def test_a_corrected_bar_recomputes_its_symbol_only_and_equals_a_full_recompute(lake_copy, bundled_raw, write_csv):
    before = _lake_features(lake_copy)
    ibm = bundled_raw[bundled_raw["Ticker"] == "IBM"].iloc[[500]].copy()
    midpoint = (float(ibm["Low"].iloc[0]) + float(ibm["High"].iloc[0])) / 2
    assert midpoint != float(ibm["Close"].iloc[0])
    ibm["Close"] = repr(midpoint)  # a vendor's correction of one bar
    assert "1 updated" in run_ok("ingest", str(write_csv(ibm, "ibm.csv")))
    output = run_ok("compute-features")
    assert "of 1 symbol(s) computed (incremental)" in output and "0 inserted" in output
    after = _lake_features(lake_copy)
    others = before["symbol"] != "IBM"
    pd.testing.assert_frame_equal(after[others.to_numpy()], before[others], check_exact=True)  # created kept too
    changed = (after[list(VALUES)].fillna(-1) != before[list(VALUES)].fillna(-1)).any(axis=1)
    assert set(after.loc[changed, "symbol"]) == {"IBM"}
    # An incremental run writes what a full recompute would: --full then changes nothing.
    assert ", 0 updated" in run_ok("compute-features", "--full")


def test_unknown_symbols_are_refused_naming_them(in_lake):
    result = CliRunner().invoke(cli, ["compute-features", "--symbols", "IBM,NOPE"], catch_exceptions=False)
    assert result.exit_code == 2 and "NOPE" in result.output and "IBM" not in result.output.split(":")[-1]


def test_the_lake_profile_serves_the_postgres_profiles_training_rows(in_lake, lake_project, pipeline, monkeypatch):
    """feature_definitions.py on the lake (SparkSource, the Spark sort-merge store) answers the model's service
    exactly as on PostgreSQL: same columns, same values, for rows at bars, between bars and before any bar."""
    from training.contract import DEFAULT_FEATURE_SERVICE
    from training.engines.spark.lake_offline_store import AsOfSparkRetrievalJob
    from training.feast_store.repository import feature_store

    rng = np.random.default_rng(5)
    bars = _lake_features(in_lake)[["symbol", "event_timestamp"]]
    picked = bars.iloc[rng.choice(len(bars), 400, replace=False)].reset_index(drop=True)
    shifts = pd.to_timedelta(rng.choice([0, 3_600, -60, 5 * 86_400, -40 * 365 * 86_400], len(picked)), unit="s")
    entity = picked.assign(event_timestamp=picked["event_timestamp"] + shifts)

    def rows(store) -> tuple[object, pd.DataFrame]:
        job = store.get_historical_features(entity, features=store.get_feature_service(DEFAULT_FEATURE_SERVICE))
        frame = job.to_df()
        for name in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[name].dtype):
                frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[us, UTC]")
        return job, frame.sort_values(["symbol", "event_timestamp"], kind="stable").reset_index(drop=True)

    monkeypatch.setenv("FEAST_PROJECT", lake_project)
    lake_job, on_lake = rows(feature_store())
    assert isinstance(lake_job, AsOfSparkRetrievalJob)
    # The online store of the lake's project serves exactly each symbol's newest lake row; a second run writes nothing.
    assert "5 symbol(s) written (5 changed)" in run_ok("materialize")
    assert "nothing to write" in run_ok("materialize")
    assert "online store matches the newest offline row of 5 symbol(s)" in run_ok("check-online")
    monkeypatch.setenv("OHLCV_ENGINE", "postgres")
    monkeypatch.setenv("FEAST_PROJECT", pipeline)
    _, on_postgres = rows(feature_store())
    assert list(on_lake.columns) == list(on_postgres.columns)
    # A row's version is when its store wrote it (each store wrote its own rows): present in both where the
    # features are, never compared across stores.
    versions = [c for c in on_lake.columns if c.endswith("_row_version")]
    assert versions and (on_lake[versions].notna() == on_postgres[versions].notna()).all().all()
    values = [c for c in on_lake.columns if c not in versions]
    pd.testing.assert_frame_equal(on_lake[values], on_postgres[values], check_exact=True, check_dtype=False)
    assert 0 < on_lake["rsi_14"].notna().sum() < len(on_lake)  # matched rows, and rows before any bar


def test_build_dataset_on_spark_equals_the_one_box_dataset(in_lake, lake_project, pipeline, tmp_path, monkeypatch):
    """Labels, the join, the on-demand view, the finite filter and every weight component (time decay and return
    attribution on, so the per-date sums and the exact totals are exercised) on Spark give the one-box rows bit
    for bit, in the same dtypes, with the same fingerprint; several Spark parts against one one-box part. The
    Spark dataset then passes verify-leakage in the lake profile, whose rebuild runs on Spark too."""
    from training.dataset import artifact

    config = tmp_path / "weights.yaml"
    config.write_text("weights:\n  uniqueness: true\n  return_attribution: true\n  time_decay: 0.5\n"
                      "  class_balance: true\n")  # fmt: skip
    monkeypatch.setenv("FEAST_PROJECT", lake_project)
    monkeypatch.setenv("OHLCV_PARTITION_BARS", "3000")  # a part per symbol or two
    output = run_ok("build-dataset", "--out", str(tmp_path / "spark"), "--config", str(config))
    assert "on Spark" in output
    monkeypatch.setenv("OHLCV_ENGINE", "postgres")
    monkeypatch.setenv("FEAST_PROJECT", pipeline)
    monkeypatch.delenv("OHLCV_PARTITION_BARS")
    run_ok("build-dataset", "--out", str(tmp_path / "one-box"), "--config", str(config))
    spark, one_box = artifact.load(tmp_path / "spark"), artifact.load(tmp_path / "one-box")
    assert len(spark.metadata["parts"]) > 2 and len(one_box.metadata["parts"]) == 1
    assert spark.metadata["fingerprint"] == one_box.metadata["fingerprint"]
    pd.testing.assert_frame_equal(spark.frame, one_box.frame, check_exact=True)
    assert spark.frame["w_time_decay"].nunique() > 100 and spark.frame["w_return_attribution"].notna().any()
    ignored = {"created_at", "known_at", "build_seconds", "parts", "partitions"}  # when and how, not what
    assert {k: v for k, v in spark.metadata.items() if k not in ignored} == {
        k: v for k, v in one_box.metadata.items() if k not in ignored
    }
    # Both record their knowledge time by one rule: their store's clock at their start (the lake's: this driver's).
    lake_at, box_at = (datetime.fromisoformat(d.metadata["known_at"]) for d in (spark, one_box))
    assert lake_at.utcoffset() == box_at.utcoffset() == timedelta(0) and lake_at < box_at
    monkeypatch.setenv("OHLCV_ENGINE", "spark")
    monkeypatch.setenv("FEAST_PROJECT", lake_project)
    report = run_ok("verify-leakage", "--dataset", str(tmp_path / "spark"))
    assert "FAIL" not in report and "reproducibility" in report


@pytest.mark.parametrize("args", [("--symbols", "IBM,NOPE"), ("--start", "2030-01-02"), ("--horizon", "5000")])
def test_build_dataset_on_spark_refuses_what_the_one_box_build_refuses(in_lake, lake_project, pipeline, tmp_path,
                                                                       monkeypatch, args):  # fmt: skip
    """Unknown symbols, an empty date range, no full label horizon: the same one-line refusal on both engines,
    and nothing written."""
    monkeypatch.setenv("FEAST_PROJECT", lake_project)
    on_spark = CliRunner().invoke(cli, ["build-dataset", "--out", str(tmp_path / "spark"), *args])
    monkeypatch.setenv("OHLCV_ENGINE", "postgres")
    monkeypatch.setenv("FEAST_PROJECT", pipeline)
    one_box = CliRunner().invoke(cli, ["build-dataset", "--out", str(tmp_path / "one-box"), *args])
    assert on_spark.exit_code == one_box.exit_code == 2, (on_spark.output, one_box.output)
    assert on_spark.output.strip().splitlines()[-1] == one_box.output.strip().splitlines()[-1]
    assert not (tmp_path / "spark").exists() and not (tmp_path / "one-box").exists()
