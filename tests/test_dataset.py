"""build-dataset on the bundled data: invariants of the artifact, reproducibility, bad input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli, run_module
from training.dataset import artifact
from training.indicators.definitions import warmup_bars


@pytest.fixture(scope="module")
def built(bundled_dataset):
    return bundled_dataset


def test_panel_artifact_is_parquet_and_json_with_every_promised_field(built):
    out, dataset = built
    assert sorted(p.name for p in out.iterdir()) == [
        artifact.MARKER_FILE,
        artifact.METADATA_FILE,
        artifact.part_name(0),
    ]
    meta = json.loads((out / artifact.METADATA_FILE).read_text())
    for key in ("features", "feature_service", "config", "fingerprint", "split", "rows_by_split"):
        assert key in meta
    assert meta["feature_service"] == "technical_model_v1"
    assert meta["symbols"] == ["AAPL", "FB", "GOOG", "IBM", "MSFT"]
    assert len(meta["features"]) == 23
    for column in ("symbol", "event_timestamp", "t1", "feature_timestamp", "label", "target", "ret", "weight", "split"):
        assert column in dataset.frame


def test_no_look_ahead_invariants_hold(built):
    _, dataset = built
    frame = dataset.frame
    assert (frame["feature_timestamp"] <= frame["event_timestamp"]).all()
    assert (frame["feature_timestamp"] == frame["event_timestamp"]).all()  # entity rows are bar closes
    assert (frame["t1"] > frame["event_timestamp"]).all()
    assert np.isfinite(frame[dataset.features].to_numpy()).all()
    train, validation = dataset.rows("train"), dataset.rows("validation")
    validation_start = pd.Timestamp(dataset.metadata["split"]["validation_start"])
    cutoff = pd.Timestamp(dataset.metadata["split"]["cutoff"])
    assert train["t1"].max() < cutoff <= validation_start <= validation["event_timestamp"].min()
    assert train["t1"].max() < validation["event_timestamp"].min()
    assert set(frame["label"].unique()) <= {-1, 0, 1}
    assert ((frame["target"] == 1) == (frame["label"] == 1)).all()


def test_warm_up_is_derived_and_dropped_per_symbol(built, conn):
    _, dataset = built
    warmup = warmup_bars()
    assert warmup == 33  # MACD's signal line in TA-Lib's convention
    for symbol, rows in dataset.frame.groupby("symbol"):
        first_allowed = conn.execute(
            "SELECT event_timestamp FROM market_data.ohlcv_daily WHERE symbol = %s "
            "ORDER BY event_timestamp OFFSET %s LIMIT 1",
            (symbol, warmup),
        ).fetchone()[0]
        assert rows["event_timestamp"].min() == pd.Timestamp(first_allowed)


def test_every_full_horizon_decision_after_warm_up_is_a_sample(built, conn):
    _, dataset = built
    counts = dict(conn.execute("SELECT symbol, count(*) FROM market_data.ohlcv_daily GROUP BY 1").fetchall())
    horizon = dataset.metadata["config"]["labels"]["horizon"]
    expected = sum(n - warmup_bars() - horizon for n in counts.values()) - dataset.metadata["rows_dropped_nonfinite"]
    assert len(dataset.frame) == expected


def test_weights_have_mean_one_within_each_split_and_nothing_is_fitted_in_the_dataset(built):
    _, dataset = built
    for role in ("train", "validation"):
        assert dataset.rows(role)["weight"].mean() == pytest.approx(1.0)
    assert (dataset.frame.loc[dataset.frame["split"].isin(["purged", "embargo"]), "weight"] == 0).all()
    assert "scaler" not in dataset.metadata  # preprocessing is fitted in each fold (audited by verify-leakage --run)


def test_rebuilding_gives_the_same_fingerprint_and_a_config_change_a_new_one(built, tmp_path):
    _, dataset = built
    killed = _killed_build_staging(tmp_path / "again")
    again = run_cli("build-dataset", "--out", str(tmp_path / "again"))
    assert again.exit_code == 0, again.output
    assert f"removed {killed}, left behind by a build that was killed" in again.output and not killed.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no staging folder of its own left either
    assert artifact.load(tmp_path / "again").metadata["fingerprint"] == dataset.metadata["fingerprint"]
    other = run_cli("build-dataset", "--out", str(tmp_path / "h10"), "--horizon", "10")
    assert other.exit_code == 0, other.output
    assert artifact.load(tmp_path / "h10").metadata["fingerprint"] != dataset.metadata["fingerprint"]


def _killed_build_staging(out) -> Path:
    """The hidden staging folder a build of ``out`` killed mid-write leaves beside it."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    staging = out.parent / f".{out.name}.build-{socket.gethostname()}-{process.pid}-abcd1234"
    staging.mkdir()
    (staging / artifact.MARKER_FILE).write_text(artifact._marker_text(None))  # what a build writes first
    (staging / artifact.part_name(0)).write_bytes(b"PAR1 half written")
    return staging


def test_the_config_data_section_is_honoured_and_options_override_it(pipeline, tmp_path):
    config = tmp_path / "fb.yaml"
    config.write_text("data:\n  symbols: [FB, IBM]\n  start: 2012-07-01\n  end: '2013-02-01'\n")
    result = run_cli("build-dataset", "--config", str(config), "--out", str(tmp_path / "fb"))
    assert result.exit_code == 0, result.output
    built = artifact.load(tmp_path / "fb")
    assert set(built.frame["symbol"]) == {"FB", "IBM"}
    assert built.frame["event_timestamp"].min() >= pd.Timestamp("2012-07-01", tz="UTC")
    assert built.frame["event_timestamp"].max() <= pd.Timestamp("2013-02-02", tz="UTC")
    assert built.metadata["config"]["data"] == {"symbols": ["FB", "IBM"], "start": "2012-07-01", "end": "2013-02-01"}
    result = run_cli("build-dataset", "--config", str(config), "--symbols", "FB", "--out", str(tmp_path / "only"))
    assert result.exit_code == 0, result.output
    only = artifact.load(tmp_path / "only")
    assert set(only.frame["symbol"]) == {"FB"} and only.metadata["config"]["data"]["symbols"] == ["FB"]
    assert only.metadata["config"]["data"]["start"] == "2012-07-01"  # the file's, not overridden


def test_single_symbol_with_a_date_range(pipeline, tmp_path):
    result = run_cli(
        "build-dataset", "--symbols", "FB", "--start", "2012-07-01", "--end", "2013-02-01", "--out", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    frame = artifact.load(tmp_path).frame
    assert set(frame["symbol"]) == {"FB"}
    assert frame["event_timestamp"].min() >= pd.Timestamp("2012-07-01", tz="UTC")
    assert frame["event_timestamp"].max() <= pd.Timestamp("2013-02-02", tz="UTC")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--symbols", "ZZZZ"), "unknown symbol(s): ZZZZ"),
        (("--start", "2020-01-01"), "no bars between 2020-01-01"),
        (("--start", "2012-01-10", "--end", "2012-01-01"), "empty date range"),
        (("--profit-taking", "5", "--stop-loss", "0.99"), "hold a single class (0)"),
        (("--symbols", "FB", "--start", "2013-02-27"), "no decision in range has a full label horizon"),
        (("--feature-service", "nope"), "unknown feature service 'nope'"),
    ],
)
def test_bad_requests_name_the_problem_and_write_nothing(pipeline, tmp_path, args, message):
    out = tmp_path / "out"
    result = run_cli("build-dataset", "--out", str(out), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_too_short_a_history_is_refused(empty_store, write_csv, bundled_raw, tmp_path):
    short = bundled_raw[bundled_raw["Ticker"] == "FB"].head(30)
    assert run_cli("ingest", str(write_csv(short))).exit_code == 0
    result = run_cli("build-dataset", "--symbols", "FB", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "too little history: FB has 30 bars" in result.output
    assert "need at least 39 bars" in result.output


def test_bars_newer_than_their_features_are_refused_until_compute_features(
    empty_store, write_csv, bundled_raw, tmp_path
):
    """A decision on a bar without its own feature row would be joined to the previous bar's features."""
    ibm = bundled_raw[bundled_raw["Ticker"] == "IBM"]
    assert run_cli("ingest", str(write_csv(ibm.head(300), "old.csv"))).exit_code == 0
    assert run_cli("compute-features").exit_code == 0
    run_module("feast", "apply")  # the scratch project's views, so the build reaches the bars check
    assert run_cli("ingest", str(write_csv(ibm.head(302), "new.csv"))).exit_code == 0  # two new bars
    out = tmp_path / "out"
    result = run_cli("build-dataset", "--symbols", "IBM", "--out", str(out))
    assert result.exit_code == 2
    assert f"2 bar(s) of 1 symbol(s) have no feature row yet (IBM from {ibm['Date'].iloc[300]})" in result.output
    assert "run `python -m training compute-features`" in result.output
    lines = result.output.splitlines()
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    assert "Traceback" not in result.output and not out.exists()
    assert run_cli("compute-features").exit_code == 0
    assert run_cli("build-dataset", "--symbols", "IBM", "--out", str(out)).exit_code == 0


def test_a_failed_rebuild_leaves_the_previous_artifact_intact(built, tmp_path):
    out, _ = built
    before = (out / artifact.METADATA_FILE).read_text()
    result = run_cli("build-dataset", "--out", str(out), "--symbols", "ZZZZ")
    assert result.exit_code == 2
    assert (out / artifact.METADATA_FILE).read_text() == before


def test_loading_something_that_is_not_a_dataset_is_a_clear_error(tmp_path):
    from training.errors import InputError

    with pytest.raises(InputError, match="is not a dataset"):
        artifact.load(tmp_path)
