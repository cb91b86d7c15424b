"""``update``: replaying the last sessions of the bundled data one file per session ends where one full run ends,
and a second replay changes nothing (the scores table included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from tests.conftest import (
    SCRATCH,
    _create_database,
    _drop_database,
    copied_database,
    run_cli,
    run_module,
    run_ok,
    session_environment,
)
from training.indicators.feature_table import FEATURES_TABLE
from training.infra import db, settings
from training.infra.schema import OHLCV_TABLE

SESSIONS = 3


def _features(conn) -> pd.DataFrame:
    query = f"SELECT * FROM {FEATURES_TABLE} ORDER BY symbol, event_timestamp"
    return db.copy_out(conn, query, {}, parse_dates=["event_timestamp"]).drop(columns="created_timestamp")


@dataclass(frozen=True)
class Replay:
    days: list[str]  # the last SESSIONS trading dates of the bundled data, each ingested by `update`
    files: list[Path]  # one CSV per day, as `update` read it
    outputs: list[str]  # what each `update` printed
    model: str  # the registered model that scored the sessions (models:/name/1)
    database: str  # the template database holding the result, copied for each test
    project: str  # its Feast project (the registry rows live in the database)


@pytest.fixture(scope="module")
def replay(pipeline, bundled_raw, tmp_path_factory) -> Iterator[Replay]:
    """Built once per module: a database holding all but the last SESSIONS sessions, features computed, Feast
    applied and materialized, a model registered; then each last session ingested by `update` from a file of its
    own. Tests get copies (:func:`replayed`): replaying costs minutes, copying a database a second."""
    from tests.test_online import log_model, model_inputs
    from training.feast_store.repository import feature_store

    name, folder = f"{SCRATCH}_replay", tmp_path_factory.mktemp("replay")
    pg = settings.postgres()
    _create_database(pg, name)
    with session_environment(), pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGDATABASE", name)
        patch.setenv("FEAST_PROJECT", name)
        days = sorted(bundled_raw["Date"].unique())[-SESSIONS:]
        history = folder / "history.csv"
        bundled_raw[~bundled_raw["Date"].isin(days)].to_csv(history, index=False)
        run_ok("ingest", str(history))
        run_ok("compute-features")
        run_module("feast", "apply")
        run_ok("materialize")
        model_name = f"update-test-{uuid.uuid4().hex[:8]}"  # its own: the online tests count their champion's versions
        log_model(model_inputs(feature_store()), registered_model=model_name)
        model = f"models:/{model_name}/1"
        files = []
        for day in days:
            files.append(folder / f"{day}.csv")
            bundled_raw[bundled_raw["Date"] == day].to_csv(files[-1], index=False)
        outputs = [run_ok("update", str(file), "--model", model) for file in files]
    yield Replay(days, files, outputs, model, name, name)
    _drop_database(pg, name)


@pytest.fixture
def replayed(replay, monkeypatch) -> Iterator[psycopg.Connection]:
    """A copy of the replayed database, its Feast project's online store rewritten to the copy's newest rows (as
    the replay left it), and a connection to the copy. The copies share the replay's Feast project (its registry
    rows are in the database), hence its online rows: a test session runs its tests one at a time, so those rows
    are each test's own while it runs (another session, or xdist worker, has a project of its own)."""
    with copied_database(replay.database) as connection:
        monkeypatch.setenv("FEAST_PROJECT", replay.project)
        run_ok("materialize", "--full")  # an earlier test may have left other rows online: the copy's newest, rewritten
        yield connection


def test_a_replay_of_the_last_sessions_equals_one_full_run_and_a_second_changes_nothing(
    replay, replayed, pipeline, write_csv
):
    from training.feast_store.repository import feature_store
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor
    from training.serving.universe_scores import score_universe

    days, files, outputs, model_uri = replay.days, replay.files, replay.outputs, replay.model
    for day, output in zip(days, outputs, strict=True):
        assert "inserted" in output and f"of the session of {day}" in output, output
        assert "check-online: the online store serves the newest offline row of the 5 symbol(s) written" in output
    # The features equal those of one ingest of the whole file (the session's pipeline database).
    with db.connect(pipeline) as full:
        expected = _features(full)
    pd.testing.assert_frame_equal(_features(replayed), expected, check_exact=True)
    # Every session was scored once per symbol, each with the numbers predict gives for the newest one.
    rows = replayed.execute(
        "SELECT bar_timestamp::date, count(*) FROM predictions.daily_scores GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [(str(day), n) for day, n in rows] == [(day, 5) for day in days]
    model = load_model(model_uri)
    newest = score_universe(Predictor(feature_store(), model), ["AAPL", "FB", "GOOG", "IBM", "MSFT"]).scores
    stored = dict(
        replayed.execute(
            "SELECT symbol, probability FROM predictions.daily_scores WHERE bar_timestamp::date = %s", (days[-1],)
        ).fetchall()
    )
    np.testing.assert_array_equal([stored[s.symbol] for s in newest], [s.probability for s in newest])
    # A second replay changes nothing at all.
    for file in files:
        again = run_ok("update", str(file), "--model", model_uri)
        assert "0 inserted, 0 updated" in again and "up to date, nothing to compute" in again, again
        assert "0 symbol(s) with a new or changed newest row written" in again
        assert "0 new or changed row(s)" in again and "drift: no input drifted" in again and "MLflow run" not in again
        assert "waiting" not in again  # no other update holds the lock
    # A vendor's correction of the last session's IBM close re-scores IBM's row of that session only.
    last = pd.read_csv(files[-1], dtype=str)
    last.loc[last["Ticker"] == "IBM", "Close"] = last.loc[last["Ticker"] == "IBM", "Low"]
    corrected = run_ok("update", str(write_csv(last, "corrected.csv")), "--model", model_uri)
    assert "1 updated" in corrected and "1 new or changed row(s)" in corrected, corrected


def test_a_session_whose_volume_jumped_tenfold_trips_the_drift_alarm_after_scoring(replay, replayed,
                                                                                   bundled_raw, write_csv):  # fmt: skip
    """The bundled sessions replayed above do not drift; a next session whose every volume is ten times the
    last one's (prices unchanged) is still scored, then update exits 4 naming the volume inputs, and a
    monitoring run with the plot is in MLflow."""
    import mlflow

    days, outputs, model_uri = replay.days, replay.outputs, replay.model
    assert all("drift: no input drifted" in output and "monitoring: session" in output for output in outputs), outputs
    shifted = bundled_raw[bundled_raw["Date"] == days[-1]].assign(Date="2013-03-04")
    shifted["Volume"] = (shifted["Volume"].astype(float) * 10).astype(int).astype(str)
    result = run_cli("update", str(write_csv(shifted, "shifted.csv")), "--model", model_uri)
    assert result.exit_code == 4, result.output
    assert "scores: 5 symbol(s) of the session of 2013-03-04" in result.output
    lines = result.output.strip().splitlines()
    alarm = next(line for line in lines if line.startswith("drift: "))
    logged = next(line for line in lines if line.startswith("monitoring: "))
    assert alarm.startswith("drift: session 2013-03-04:") and "error" not in result.output, alarm  # a result
    assert "session 2013-03-04:" in alarm and "drifted" in alarm and "volume" in alarm, alarm
    assert "close" not in alarm.split("drifted")[1].replace("close_open", ""), alarm  # prices did not move
    assert logged.startswith("monitoring: session 2013-03-04"), logged
    run_id = logged.rsplit("MLflow run ", 1)[1]
    assert "drift.png" in [a.path for a in mlflow.MlflowClient().list_artifacts(run_id)]


def _count(conn, table: str) -> int | None:
    """Rows of ``table``, None when it does not exist (nothing ever wrote it)."""
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return None
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _nothing_written(conn) -> bool:
    return _count(conn, OHLCV_TABLE) in (None, 0) and _count(conn, FEATURES_TABLE) in (None, 0)


def test_a_model_that_does_not_resolve_exits_2_before_anything_is_written(empty_store, bundled_raw, write_csv):
    file = write_csv(bundled_raw.tail(5), "day.csv")
    result = run_cli("update", str(file), "--model", "models:/nope/1")
    assert result.exit_code == 2 and "models:/nope/1" in result.output.strip().splitlines()[-1], result.output
    assert "Traceback" not in result.output
    assert _nothing_written(empty_store)
    # No registered model at all (the champion is looked up): the same.
    result = run_cli("update", str(file))
    assert result.exit_code == 2 and "no registered model" in result.output, result.output
    assert _nothing_written(empty_store)


@pytest.mark.parametrize("uri", ["sqlite:////proc/nope/mlflow.db", "http://127.0.0.1:9/"])
def test_an_unusable_mlflow_exits_3_in_one_line_before_anything_is_written(uri, empty_store, bundled_raw, write_csv,
                                                                          monkeypatch):  # fmt: skip
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = run_cli("update", str(write_csv(bundled_raw.tail(5), "day.csv")), "--model", "models:/any/1")
    assert result.exit_code == 3, result.output
    assert result.output.strip().splitlines() == [result.output.strip()], result.output
    assert "MLFLOW_TRACKING_URI" in result.output
    assert _nothing_written(empty_store)


def test_an_unreachable_redis_exits_3_before_anything_is_written(empty_store, bundled_raw, write_csv, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    result = run_cli("update", str(write_csv(bundled_raw.tail(5), "day.csv")), "--model", "models:/any/1")
    assert result.exit_code == 3 and "REDIS_URL" in result.output, result.output
    assert _nothing_written(empty_store)


def test_an_online_store_that_lost_the_write_exits_1(replay, replayed, bundled_raw, write_csv, monkeypatch):
    """A materialization whose rows never reach the online store (an eviction, a second writer) is caught by
    the parity check: exit 1, naming the stale symbols, and no score of a session the store does not serve."""
    from training.serving import materialization

    days, model_uri = replay.days, replay.model
    lost = materialization.Materialized([], [], 0, None, None, "redis")
    monkeypatch.setattr(materialization, "materialize_changed", lambda *args, **kwargs: lost)
    nextday = bundled_raw[bundled_raw["Date"] == days[-1]].assign(Date="2013-03-04")
    result = run_cli("update", str(write_csv(nextday, "next.csv")), "--model", model_uri)
    assert result.exit_code == 1, result.output
    assert "scores:" not in result.output, result.output
    assert _count(replayed, "predictions.daily_scores") == 5 * SESSIONS


def _start_update(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "training", "update", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def test_a_kill_after_scoring_leaves_the_monitoring_run_pending_and_a_second_update_waits(
    replay, replayed, bundled_raw, write_csv
):
    """kill -9 once the scores are written: the session's monitoring run is pending, and the next update
    (nothing else to do) logs it. An update started while another holds the lock waits, writing nothing."""
    import mlflow

    days, model_uri = replay.days, replay.model
    last = bundled_raw[bundled_raw["Date"] == days[-1]]
    process = _start_update(str(write_csv(last.assign(Date="2013-03-04"), "a.csv")), "--model", model_uri)
    for line in process.stdout:
        if line.startswith("scores:"):
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    pending = "SELECT session::text, mlflow_run_id FROM predictions.monitoring_runs WHERE session = '2013-03-04'"
    assert replayed.execute(pending).fetchall() == [("2013-03-04", None)]
    again = run_ok("update", str(write_csv(last.assign(Date="2013-03-04"), "a.csv")), "--model", model_uri)
    assert "0 new or changed row(s)" in again and "monitoring: session 2013-03-04" in again, again
    ((_, run_id),) = replayed.execute(pending).fetchall()
    assert "drift.png" in [a.path for a in mlflow.MlflowClient().list_artifacts(run_id)]
    # A second update waits for the lock of the first (held here), then does its whole run.
    key = f"training update {os.environ['FEAST_PROJECT']}"
    replayed.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
    process = _start_update(str(write_csv(last.assign(Date="2013-03-05"), "b.csv")), "--model", model_uri)
    first = process.stdout.readline()
    assert "another update is running" in first, first
    time.sleep(2)
    assert process.poll() is None
    stored = f"SELECT count(*) FROM {OHLCV_TABLE} WHERE trade_date = '2013-03-05'"
    assert replayed.execute(stored).fetchone()[0] == 0
    replayed.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output
    assert replayed.execute(stored).fetchone()[0] == 5


def test_a_corrected_bar_of_an_earlier_session_is_re_scored_on_its_offline_features_once(replay, replayed, write_csv):
    """A vendor's correction of AAPL's close one session before the newest: its stored score becomes what the
    model gives on the corrected features (computed here from the feature table, not through Feast), the rows
    whose features did not change keep their score and write time, and a second update re-scores nothing."""
    from tests.test_online import model_inputs, offline_model_rows
    from training.feast_store.repository import feature_store
    from training.serving.model_loading import load_model

    days, files, model_uri = replay.days, replay.files, replay.model
    stored = "SELECT symbol, bar_timestamp::date::text, probability, created_timestamp FROM predictions.daily_scores"
    before = {(s, d): (p, c) for s, d, p, c in replayed.execute(stored).fetchall()}
    earlier = pd.read_csv(files[-2], dtype=str)
    aapl = earlier["Ticker"] == "AAPL"  # a close at the low on ten times the volume: the model's inputs move
    earlier.loc[aapl, "Close"] = earlier.loc[aapl, "Low"]
    earlier.loc[aapl, "Volume"] = (earlier.loc[aapl, "Volume"].astype(float) * 10).astype(int).astype(str)
    output = run_ok("update", str(write_csv(earlier, "corrected.csv")), "--model", model_uri)
    after = {(s, d): (p, c) for s, d, p, c in replayed.execute(stored).fetchall()}
    # What the model gives on the corrected feature rows of AAPL (both sessions' rows changed: the newest one's
    # returns start from the corrected close).
    model = load_model(model_uri)
    rows = offline_model_rows(model_inputs(feature_store()))
    rows = rows[rows["symbol"] == "AAPL"]
    for day in days[-2:]:
        inputs = rows.loc[rows["event_timestamp"].dt.date.astype(str) == day, model.inputs]
        expected = model.estimator.predict_proba(inputs.astype("float64"))[0][-1]
        assert after[("AAPL", day)][0] == pytest.approx(expected, abs=1e-12), day
    assert after[("AAPL", days[-2])][0] != before[("AAPL", days[-2])][0]  # the correction moved the score
    assert after[("AAPL", days[-2])][1] > before[("AAPL", days[-2])][1]
    untouched = {key for key in before if not (key[0] == "AAPL" and key[1] in days[-2:])}
    assert {key: after[key] for key in untouched} == {key: before[key] for key in untouched}
    # The newest session's AAPL row is re-scored by the session's own scoring when its numbers changed there.
    newest_changed = after[("AAPL", days[-1])][0] != before[("AAPL", days[-1])][0]
    line = next(line for line in output.splitlines() if line.startswith("re-scored: "))
    assert line.startswith(f"re-scored: {1 + (not newest_changed)} earlier row(s)"), output
    again = run_ok("update", str(write_csv(earlier, "corrected.csv")), "--model", model_uri)
    assert "re-scored: 0 earlier row(s)" in again, again
    assert {(s, d): (p, c) for s, d, p, c in replayed.execute(stored).fetchall()} == after


def test_a_corrected_bar_scored_by_a_model_that_no_longer_resolves_is_re_scored_by_the_current_one(
    replay, replayed, write_csv
):
    """The model that scored the corrected bar was deleted from the registry: the current model scores the bar
    and its row replaces the old model's, saying so; a second update re-scores nothing.

    The replay's model is shared by every copy, so the scores of this copy are handed to a registered copy of it
    (the same artifact: the same numbers), and that one is deleted."""
    import mlflow

    from tests.test_online import log_model, model_inputs
    from training.feast_store.repository import feature_store

    days, files, client = replay.days, replay.files, mlflow.MlflowClient()
    shared, old_name = replay.model.removeprefix("models:/").rsplit("/", 1)[0], f"update-test-{uuid.uuid4().hex[:8]}"
    mlflow.register_model(client.get_model_version(shared, "1").source, old_name)
    old_uri = f"models:/{old_name}/1"
    for table in ("predictions.daily_scores", "predictions.monitoring_runs"):
        replayed.execute(f"UPDATE {table} SET model_name = %s WHERE model_name = %s", (old_name, shared))
    client.delete_model_version(old_name, "1")
    name = f"update-test-{uuid.uuid4().hex[:8]}"
    log_model(model_inputs(feature_store()), registered_model=name)
    new_uri = f"models:/{name}/1"
    earlier = pd.read_csv(files[-2], dtype=str)
    aapl = earlier["Ticker"] == "AAPL"
    earlier.loc[aapl, "Close"] = earlier.loc[aapl, "Low"]
    earlier.loc[aapl, "Volume"] = (earlier.loc[aapl, "Volume"].astype(float) * 10).astype(int).astype(str)
    output = run_ok("update", str(write_csv(earlier, "corrected.csv")), "--model", new_uri)
    assert f"{old_uri} no longer resolve(s): re-scored with {new_uri} instead" in output, output
    models = "SELECT model_name FROM predictions.daily_scores WHERE symbol = 'AAPL' AND bar_timestamp::date = %s"
    assert replayed.execute(models, (days[-2],)).fetchall() == [(name,)]
    assert replayed.execute(models, (days[-3],)).fetchall() == [(old_name,)]  # its features did not change
    again = run_ok("update", str(write_csv(earlier, "corrected.csv")), "--model", new_uri)
    assert "re-scored: 0 earlier row(s)" in again, again


def test_serve_scores_the_session_update_writes_while_it_runs_never_the_one_it_remembers(
    replay, replayed, bundled_raw, write_csv
):
    """serve remembers the newest session between POST /predict {} requests, but scores what PostgreSQL names
    now: a session ingested while it runs is the one answered at once (its symbols refused until materialized,
    the remembered rows never scored as today's), a symbol added to it later joins it, and once materialized
    the new session is scored."""
    from tests.conftest import http_app
    from training.feast_store.repository import feature_store
    from training.serving.http_app import create_app
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor

    days, model_uri = replay.days, replay.model
    symbols = ["AAPL", "FB", "GOOG", "IBM", "MSFT"]
    nextday = bundled_raw[bundled_raw["Date"] == days[-1]].assign(Date="2013-03-04")
    first = nextday["Ticker"].isin(["AAPL", "IBM"])

    def scored(body: dict) -> dict[str, str]:
        return {score["symbol"]: score["bar_timestamp"][:10] for score in body["scores"]}

    with http_app(create_app(Predictor(feature_store(), load_model(model_uri)))) as post:
        for _ in range(2):  # the second request reads with the session the first one remembered
            status, body = post("/predict", {})
            assert status == 200 and scored(body) == dict.fromkeys(symbols, days[-1]), body
        run_ok("ingest", str(write_csv(nextday[first], "first.csv")))
        status, body = post("/predict", {})
        assert status == 200 and body["scores"] == [] and sorted(body["not_scored"]) == ["AAPL", "IBM"], body
        assert all("2013-03-04" in why and "materialize" in why for why in body["not_scored"].values()), body
        run_ok("ingest", str(write_csv(nextday[~first], "later.csv")))
        status, body = post("/predict", {})
        assert status == 200 and body["scores"] == [] and sorted(body["not_scored"]) == symbols, body
        run_ok("compute-features")
        run_ok("materialize")
        status, body = post("/predict", {})
        assert status == 200 and scored(body) == dict.fromkeys(symbols, "2013-03-04") and not body["not_scored"], body


def test_served_predictions_replay_as_known_when_served_after_a_correction_and_a_planted_difference_fails(
    replay, replayed, write_csv
):
    """Every row update, serve and predict scored is in serving.prediction_log; after a vendor's correction of an
    already-served bar (ingested, computed, materialized: the online store serves the corrected features),
    `replay` recomputes every logged row as known at its request time and finds no difference. One logged value
    altered by hand is a difference: exit 1, naming that feature."""
    from datetime import UTC, datetime, timedelta

    from tests.conftest import http_app
    from tests.test_online import model_inputs, offline_model_rows
    from training.feast_store.repository import feature_store
    from training.serving.http_app import create_app
    from training.serving.model_loading import load_model
    from training.serving.prediction_log import LOG_TABLE
    from training.serving.scorer import Predictor
    from training.serving.served_replay import read_log, replayed_rows

    days, files, model_uri = replay.days, replay.files, replay.model
    model = load_model(model_uri)
    with http_app(create_app(Predictor(feature_store(), model, log="serve"))) as call:
        assert call("/predict/IBM")[0] == 200
        assert call("/predict", {})[0] == 200
    run_ok("predict", "--symbol", "IBM", "--model-uri", model_uri)
    counted = dict(replayed.execute(f"SELECT source, count(*) FROM {LOG_TABLE} GROUP BY 1").fetchall())
    assert counted == {"update": 5 * SESSIONS, "serve": 6, "predict": 1}, counted  # serve's buffer flushed at exit
    served = f"SELECT features FROM {LOG_TABLE} WHERE source = 'predict'"
    (logged,) = replayed.execute(served).fetchone()
    assert set(logged) == {"bar_timestamp", *model.inputs} and logged["bar_timestamp"].startswith(days[-1])
    # A vendor's correction of IBM's newest (served) bar, through the standalone commands.
    last = pd.read_csv(files[-1], dtype=str)
    ibm = last["Ticker"] == "IBM"
    last.loc[ibm, "Close"] = last.loc[ibm, "Low"]
    last.loc[ibm, "Volume"] = (last.loc[ibm, "Volume"].astype(float) * 10).astype(int).astype(str)
    run_ok("ingest", str(write_csv(last, "corrected.csv")))
    run_ok("compute-features")
    run_ok("materialize")
    online = Predictor(feature_store(), model).read("IBM")
    offline = offline_model_rows(model_inputs(feature_store()), latest=True).loc["IBM"]
    assert {n: online[n] for n in model.inputs} == {n: offline[n] for n in model.inputs}  # the corrected row
    assert any(online[n] != logged[n] for n in model.inputs)  # which is not what was served
    # Replayed as known now, the served row would differ: the replay below must read the version known then.
    with db.connect() as conn:
        (served_row,) = read_log(conn, datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))[-1:]
    assert served_row.source == "predict"
    (now,) = replayed_rows(feature_store(), served_row.feature_service, [served_row], datetime.now(UTC))
    assert any(now[n] != logged[n] for n in model.inputs)
    (then,) = replayed_rows(feature_store(), served_row.feature_service, [served_row], served_row.request_time)
    assert {n: then[n] for n in model.inputs} == {n: logged[n] for n in model.inputs}
    today = datetime.now(UTC).date()
    window = ("--from", str(today - timedelta(days=1)), "--to", str(today))
    result = run_cli("replay", *window)
    assert result.exit_code == 0, result.output
    assert f"replay: {5 * SESSIONS + 7} logged row(s) (predict, serve, update)" in result.output, result.output
    assert "every feature value equals its replay" in result.output
    # A value altered in the log is a difference, named with its feature.
    planted = model.inputs[3]
    replayed.execute(
        f"UPDATE {LOG_TABLE} SET features = jsonb_set(features, %s, to_jsonb(%s::float8)) "
        "WHERE ctid = (SELECT ctid FROM " + LOG_TABLE + " WHERE source = 'serve' LIMIT 1)",
        ([planted], float(logged[planted]) + 1e-9),
    )
    result = run_cli("replay", *window)
    assert result.exit_code == 1, result.output
    line = next(line for line in result.output.splitlines() if line.startswith(planted + " "))
    assert line.split()[1:3] == [str(5 * SESSIONS + 7), "1"], line
    assert f"features differing: {planted} (1)" in result.output, result.output
    # Bad dates and an empty range are refused in one line.
    assert run_cli("replay", "--from", "2026-13-01", "--to", "2026-12-31").exit_code == 2
    empty = run_cli("replay", "--from", "2001-01-01", "--to", "2001-01-02")
    assert empty.exit_code == 2 and "no prediction was logged" in empty.output and "it holds" in empty.output
