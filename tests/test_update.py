"""``update``: replaying the last sessions of the bundled data one file per session ends where one full run ends,
and a second replay changes nothing (the scores table included)."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli, run_module
from training.indicators.feature_table import FEATURES_TABLE
from training.infra import db

SESSIONS = 3


def _ok(*args: str) -> str:
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result.output


def _features(conn) -> pd.DataFrame:
    query = f"SELECT * FROM {FEATURES_TABLE} ORDER BY symbol, event_timestamp"
    return db.copy_out(conn, query, {}, parse_dates=["event_timestamp"]).drop(columns="created_timestamp")


@pytest.fixture
def replayed(pipeline, empty_store, bundled_raw, write_csv):
    """The scratch store holding all but the last SESSIONS sessions, features computed, Feast applied and
    materialized, a model registered; then each last session ingested by `update` from a file of its own."""
    from tests.test_online import log_model, model_inputs
    from training.feast_store.repository import feature_store

    days = sorted(bundled_raw["Date"].unique())[-SESSIONS:]
    _ok("ingest", str(write_csv(bundled_raw[~bundled_raw["Date"].isin(days)], "history.csv")))
    _ok("compute-features")
    run_module("feast", "apply")
    _ok("materialize")
    name = f"update-test-{uuid.uuid4().hex[:8]}"  # its own model: the online tests count their champion's versions
    log_model(model_inputs(feature_store()), registered_model=name)
    model = f"models:/{name}/1"
    files = [write_csv(bundled_raw[bundled_raw["Date"] == day], f"{day}.csv") for day in days]
    outputs = [_ok("update", str(file), "--model", model) for file in files]
    return days, files, outputs, model


def test_a_replay_of_the_last_sessions_equals_one_full_run_and_a_second_changes_nothing(
    replayed, empty_store, pipeline, write_csv
):
    from training.feast_store.repository import feature_store
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor
    from training.serving.universe_scores import score_universe

    days, files, outputs, model_uri = replayed
    for day, output in zip(days, outputs, strict=True):
        assert "inserted" in output and f"of the session of {day}" in output, output
        assert "check-online: the online store serves the newest offline row of the 5 symbol(s) written" in output
    # The features equal those of one ingest of the whole file (the session's pipeline database).
    with db.connect(pipeline) as full:
        expected = _features(full)
    pd.testing.assert_frame_equal(_features(empty_store), expected, check_exact=True)
    # Every session was scored once per symbol, each with the numbers predict gives for the newest one.
    rows = empty_store.execute(
        "SELECT bar_timestamp::date, count(*) FROM predictions.daily_scores GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [(str(day), n) for day, n in rows] == [(day, 5) for day in days]
    model = load_model(model_uri)
    newest = score_universe(Predictor(feature_store(), model), ["AAPL", "FB", "GOOG", "IBM", "MSFT"]).scores
    stored = dict(
        empty_store.execute(
            "SELECT symbol, probability FROM predictions.daily_scores WHERE bar_timestamp::date = %s", (days[-1],)
        ).fetchall()
    )
    np.testing.assert_array_equal([stored[s.symbol] for s in newest], [s.probability for s in newest])
    # A second replay changes nothing at all.
    for file in files:
        again = _ok("update", str(file), "--model", model_uri)
        assert "0 inserted, 0 updated" in again and "up to date, nothing to compute" in again, again
        assert "0 symbol(s) with a new or changed newest row written" in again
        assert "0 new or changed row(s)" in again and "drift: no input drifted" in again and "MLflow run" not in again
    # A vendor's correction of the last session's IBM close re-scores IBM's row of that session only.
    last = pd.read_csv(files[-1], dtype=str)
    last.loc[last["Ticker"] == "IBM", "Close"] = last.loc[last["Ticker"] == "IBM", "Low"]
    corrected = _ok("update", str(write_csv(last, "corrected.csv")), "--model", model_uri)
    assert "1 updated" in corrected and "1 new or changed row(s)" in corrected, corrected


def test_a_session_whose_volume_jumped_tenfold_trips_the_drift_alarm_after_scoring(replayed, empty_store,
                                                                                   bundled_raw, write_csv):  # fmt: skip
    """The bundled sessions replayed above do not drift; a next session whose every volume is ten times the
    last one's (prices unchanged) is still scored, then update exits 4 naming the volume inputs, and a
    monitoring run with the plot is in MLflow."""
    import mlflow

    days, _, outputs, model_uri = replayed
    assert all("drift: no input drifted" in output and "MLflow run" in output for output in outputs), outputs
    shifted = bundled_raw[bundled_raw["Date"] == days[-1]].assign(Date="2013-03-04")
    shifted["Volume"] = (shifted["Volume"].astype(float) * 10).astype(int).astype(str)
    result = run_cli("update", str(write_csv(shifted, "shifted.csv")), "--model", model_uri)
    assert result.exit_code == 4, result.output
    assert "scores: 5 symbol(s) of the session of 2013-03-04" in result.output
    alarm = result.output.strip().splitlines()[-1]
    assert alarm.startswith("drift: session 2013-03-04:") and "error" not in result.output, alarm  # a result
    assert "session 2013-03-04:" in alarm and "drifted" in alarm and "volume" in alarm, alarm
    assert "close" not in alarm.split("drifted")[1].replace("close_open", ""), alarm  # prices did not move
    run_id = alarm.rsplit("MLflow run ", 1)[1].rstrip(")")
    assert "drift.png" in [a.path for a in mlflow.MlflowClient().list_artifacts(run_id)]
