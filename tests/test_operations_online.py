"""A corrected bar reaches the online store (issue 18, item 5), on the scratch database and its own Feast project.

Feast's Redis store skips a write whose event time is not newer than the stored one, so a bar corrected in
place (same stamp, new values) used to keep its old values online while materialize exited 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import (
    BUNDLED_DATA,
    SCRATCH,
    _create_database,
    _drop_database,
    copied_database,
    run_cli,
    run_module,
    run_ok,
    session_environment,
)
from tests.test_online import log_model, model_inputs, offline_model_rows, predict_json


@pytest.fixture(scope="module")
def online_template(pipeline, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """Built once per module: bundled bars and features in a database of their own, its Feast project applied and
    materialized, a model in an MLflow backend of its own. Tests get copies (:func:`scratch_online`)."""
    from training.feast_store.repository import feature_store
    from training.infra import settings

    name, folder = f"{SCRATCH}_online_ops", tmp_path_factory.mktemp("online_ops")
    _create_database(settings.postgres(), name)
    with session_environment(), _module_environment(name, folder):
        run_ok("ingest", str(BUNDLED_DATA))
        run_ok("compute-features")
        run_module("feast", "apply")
        run_ok("materialize")
        log_model(model_inputs(feature_store()))
    yield name, folder
    with session_environment(), _module_environment(name, folder):
        store = feature_store()
        store._get_provider().teardown_infra(store.project, store.list_feature_views(), store.list_entities())
    _drop_database(settings.postgres(), name)


@contextmanager
def _module_environment(name: str, folder: Path) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGDATABASE", name)
        patch.setenv("FEAST_PROJECT", name)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        patch.setenv("OHLCV_STATE_DIR", str(folder))
        yield


@pytest.fixture
def scratch_online(online_template, monkeypatch) -> Iterator[tuple]:
    """A copy of the template's database, its project's online rows rewritten to the copy's newest ones (an earlier
    test may have left a correction online): (the FeatureStore, a connection to the copy)."""
    from training.feast_store.repository import feature_store

    name, folder = online_template
    with copied_database(name) as connection:
        monkeypatch.setenv("FEAST_PROJECT", name)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        monkeypatch.setenv("OHLCV_STATE_DIR", str(folder))
        run_ok("materialize", "--full")
        yield feature_store(), connection


def test_a_corrected_last_bar_reaches_the_online_store_and_predict(scratch_online, bundled_raw, write_csv):
    """Also: check-online's failure is one short line (a count and the first few), and materialize repairs it."""
    store, connection = scratch_online
    inputs = model_inputs(store)
    assert run_ok("check-online").strip().endswith("matches the newest offline row of 5 symbol(s)")
    before = predict_json("--symbol", "AAPL")

    last = bundled_raw[bundled_raw["Ticker"] == "AAPL"].tail(1).copy()
    close, adjusted = float(last["Close"].iloc[0]), float(last["Adj Close"].iloc[0])
    corrected = (float(last["High"].iloc[0]) + float(last["Low"].iloc[0])) / 2
    assert corrected != close
    last["Close"], last["Adj Close"] = repr(corrected), repr(corrected * adjusted / close)
    assert "0 inserted, 1 updated" in run_ok("ingest", str(write_csv(last, "corrected.csv")))
    assert "0 inserted, 1 updated" in run_ok("compute-features")  # only the corrected bar's row changes
    run_ok("materialize")

    checked = run_ok("check-online")
    assert "matches the newest offline row of 5 symbol(s)" in checked
    after = predict_json("--symbol", "AAPL")
    assert after["bar_timestamp"] == before["bar_timestamp"]  # the same bar, corrected in place
    expected = offline_model_rows(inputs, latest=True).loc["AAPL", inputs]
    for name in inputs:
        assert after["features"][name] == pytest.approx(float(expected[name]), rel=1e-12, nan_ok=True), name
    assert after["features"]["close_open_ratio"] != before["features"]["close_open_ratio"]
    assert after["features"]["roc_1"] != before["features"]["roc_1"]
    stamp = pd.Timestamp(after["bar_timestamp"])
    assert stamp == offline_model_rows([], latest=True).loc["AAPL", "event_timestamp"]
    _check_online_fails_in_one_short_line(connection)


def _check_online_fails_in_one_short_line(conn) -> None:
    from training.commands.check_online import SHOWN

    conn.execute(  # every symbol's newest row corrected offline, nothing materialized since
        "UPDATE features.technical_indicators f SET roc_1 = roc_1 + 1 FROM (SELECT symbol, max(event_timestamp) "
        "AS last FROM features.technical_indicators GROUP BY symbol) n WHERE f.symbol = n.symbol "
        "AND f.event_timestamp = n.last"
    )
    result = run_cli("check-online")
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and len(error[0]) < 400, error
    assert "for 5 symbol(s): AAPL momentum:roc_1" in error[0] and "python -m training materialize" in error[0]
    assert SHOWN == 5
    run_ok("materialize")
    run_ok("check-online")


def test_a_deleted_sqlite_online_file_is_recreated_by_the_commands_that_use_it(pipeline, tmp_path, monkeypatch):
    """`feast apply` creates the online tables; a SQLite file moved or deleted afterwards must not make
    materialize or check-online fail with "no such table": they recreate the tables from the registry."""
    import uuid

    from training.infra import settings

    monkeypatch.delenv("REDIS_URL", raising=False)  # the SQLite online store, whatever the machine configures
    monkeypatch.setenv("OHLCV_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("FEAST_PROJECT", f"{pipeline}_sqlite_{uuid.uuid4().hex[:6]}")
    online_file = tmp_path / "online_store.db"
    assert settings.online_store_config() == {"type": "sqlite", "path": str(online_file)}
    run_module("feast", "apply")
    assert online_file.is_file()
    online_file.unlink()

    result = run_cli("check-online")  # the tables come back empty: every symbol is missing, one line says what to run
    assert result.exit_code == 1, result.output
    assert "no such table" not in result.output and "python -m training materialize" in result.output
    online_file.unlink()
    assert "into the sqlite online store" in run_ok("materialize")
    assert run_ok("check-online").strip().endswith("matches the newest offline row of 5 symbol(s)")


def test_a_correction_materialized_into_one_view_only_is_refused_until_materialize_reruns(
    scratch_online, bundled_raw, write_csv
):
    """materialize killed (-9) after its first view while writing a correction of the newest bar: that view holds
    the corrected row, the others the old one, all of the same bar. predict, serve and the universe scoring of
    update refuse the row (naming the views) until materialize runs again; then predict serves the corrected row.
    """
    from datetime import timedelta

    from tests.conftest import http_app
    from training.serving.http_app import create_app
    from training.serving.model_loading import load_model
    from training.serving.online_store import overwriting
    from training.serving.scorer import Predictor
    from training.serving.universe_scores import score_universe

    store, _ = scratch_online
    inputs = model_inputs(store)
    before = predict_json("--symbol", "AAPL")
    last = bundled_raw[bundled_raw["Ticker"] == "AAPL"].tail(1).copy()
    close, adjusted = float(last["Close"].iloc[0]), float(last["Adj Close"].iloc[0])
    corrected = (float(last["High"].iloc[0]) + float(last["Low"].iloc[0])) / 2
    last["Close"], last["Adj Close"] = repr(corrected), repr(corrected * adjusted / close)
    assert "0 inserted, 1 updated" in run_ok("ingest", str(write_csv(last, "corrected.csv")))
    assert "0 inserted, 1 updated" in run_ok("compute-features")

    first = store.list_feature_views()[0].name  # the view materialize writes first
    bar = pd.Timestamp(before["bar_timestamp"]).to_pydatetime()
    with overwriting(store):  # what the killed run had written: one view, the corrected row
        store.materialize(start_date=bar, end_date=bar + timedelta(microseconds=1), feature_views=[first])

    predicted = run_cli("predict", "--symbol", "AAPL")
    assert predicted.exit_code == 2, predicted.output
    error = predicted.output.strip().splitlines()
    assert len(error) == 1 and "online features of AAPL mix versions of the bar of" in error[0], error
    assert f"{first}: " in error[0] and "python -m training materialize" in error[0]
    predictor = Predictor(store, load_model())
    with http_app(create_app(predictor)) as get:
        status, body = get("/predict/AAPL")
        assert status == 409 and "mix versions" in body["detail"] and first in body["detail"], body
        status, body = get("/predict", {"symbols": ["AAPL", "IBM"]})
        assert status == 200 and [s["symbol"] for s in body["scores"]] == ["IBM"], body
        assert "mix versions" in body["not_scored"]["AAPL"]
    assert "mix versions" in score_universe(predictor, ["AAPL"]).skipped["AAPL"]  # what update writes
    checked = run_cli("check-online", "--symbols", "AAPL")
    assert checked.exit_code == 1 and "AAPL: predict refuses it: online features of AAPL mix versions" in checked.output

    run_ok("materialize")  # the rerun writes the views the killed run never reached
    run_ok("check-online")
    after = predict_json("--symbol", "AAPL")
    assert after["bar_timestamp"] == before["bar_timestamp"]
    expected = offline_model_rows(inputs, latest=True).loc[["AAPL"], inputs].reset_index(drop=True)
    assert after["probability"] == pytest.approx(load_model().estimator.predict_proba(expected)[0, 1], rel=1e-12, abs=0)
    assert after["features"]["close_open_ratio"] != before["features"]["close_open_ratio"]
