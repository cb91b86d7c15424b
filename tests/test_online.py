"""check-online and predict against the real online store (Redis or SQLite), PostgreSQL and MLflow.

The module has its own Feast project (applied as a user would, then materialized) and its own MLflow
backend in a temp folder, where it registers a small Pipeline(RobustScaler, LGBMClassifier) fitted on the
real features the way the trainer does; the session's real `mlflow server` serves the last test.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SESSION, free_port, http_app, run_cli, run_module
from training.contract import DEFAULT_FEATURE_SERVICE
from training.errors import InputError
from training.indicators.scale_free import scale_free_forms
from training.infra import db

PROJECT = f"{SESSION}_online"
FRESH_PROJECT = f"{SESSION}_online_fresh"  # applied, never materialized
MODEL = "ohlcv-lgbm-baseline"
SERVICE = DEFAULT_FEATURE_SERVICE
BUNDLED_SYMBOLS = ["AAPL", "FB", "GOOG", "IBM", "MSFT"]


@pytest.fixture(scope="module")
def project(pipeline, tmp_path_factory):
    """This module's Feast project, applied by `python -m training feast apply`; nothing materialized yet."""
    backend = tmp_path_factory.mktemp("mlflow_local")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEAST_PROJECT", PROJECT)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{backend / 'mlflow.db'}")
        patch.setenv("OHLCV_STATE_DIR", str(backend))  # local artifact root of the experiments we create
        run_module("feast", "apply")
        yield PROJECT
        from training.feast_store.repository import feature_store

        store = feature_store()
        store._get_provider().teardown_infra(PROJECT, store.list_feature_views(), store.list_entities())


@pytest.fixture(scope="module")
def store(project):
    from training.feast_store.repository import feature_store

    return feature_store()


def model_inputs(store) -> list[str]:
    """The trainer's contract: the service's features minus bar_timestamp, in the service's order."""
    service = store.get_feature_service(SERVICE)
    return [f.name for p in service.feature_view_projections for f in p.features if f.name != "bar_timestamp"]


def offline_model_rows(inputs: list[str], latest: bool = False) -> pd.DataFrame:
    """Model inputs computed from the offline table: level features through the on-demand view's function."""
    query = "SELECT * FROM features.technical_indicators ORDER BY symbol, event_timestamp"
    if latest:
        query = "SELECT DISTINCT ON (symbol) * FROM features.technical_indicators ORDER BY symbol, event_timestamp DESC"
    with db.connect() as conn:
        table = db.copy_out(conn, query, parse_dates=["event_timestamp"])
    forms = pd.DataFrame(scale_free_forms({c: table[c].tolist() for c in table.columns}), index=table.index)
    frame = pd.concat([table, forms], axis=1)
    frame.index = frame["symbol"].to_numpy()
    return frame


def log_model(inputs: list[str], registered_model: str | None = MODEL) -> str:
    """Fit and log a small Pipeline(RobustScaler, LGBMClassifier) like the trainer; returns the model URI."""
    import mlflow
    from lightgbm import LGBMClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler

    from training.infra import settings
    from training.model.model_logging import log_skops_model

    rows = offline_model_rows(inputs)
    next_close = rows.groupby("symbol")["close"].shift(-1)
    keep = (next_close.notna() & rows[inputs].notna().all(axis=1)).to_numpy()
    X = rows.loc[keep, inputs].reset_index(drop=True)
    y = (next_close > rows["close"]).to_numpy()[keep].astype(int)  # a toy target: the next close is higher
    scaler = RobustScaler().set_output(transform="pandas")
    classifier = LGBMClassifier(n_estimators=8, num_leaves=4, n_jobs=1, verbose=-1, random_state=1)
    pipeline = Pipeline([("scaler", scaler), ("model", classifier)]).fit(X, y)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri())
    experiment = mlflow.get_experiment_by_name("online-tests")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else mlflow.create_experiment("online-tests", artifact_location=settings.mlflow_artifact_root())
    )
    example = X.head(5)
    with mlflow.start_run(experiment_id=experiment_id, tags={"feature_service": SERVICE}):
        from training.model.input_distribution import ARTIFACT, input_distribution

        sessions = rows.loc[keep, "event_timestamp"].to_numpy()
        distribution = input_distribution(((n, X[n]) for n in inputs), len(X), sessions)  # as the trainer records it
        mlflow.log_dict(distribution, ARTIFACT)
        info = log_skops_model(pipeline, example, registered_model=registered_model,
                               pip_requirements=["scikit-learn", "lightgbm", "skops"])  # fmt: skip
    if registered_model:
        mlflow.MlflowClient().set_registered_model_alias(registered_model, "champion", info.registered_model_version)
    return info.model_uri


@pytest.fixture(scope="module")
def registered(store) -> str:
    """The default model (ohlcv-lgbm-baseline@champion) in this module's MLflow backend."""
    return log_model(model_inputs(store))


def predict_json(*args: str) -> dict:
    result = run_cli("predict", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


# --- nothing materialized: every symbol is missing online ---------------------------------------------


@pytest.fixture(scope="module")
def fresh_project(project):
    """A second project of the same repository that is never materialized: "nothing online" in any test order."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEAST_PROJECT", FRESH_PROJECT)
        run_module("feast", "apply")
    return FRESH_PROJECT


@pytest.fixture
def nothing_online(fresh_project, monkeypatch):
    monkeypatch.setenv("FEAST_PROJECT", fresh_project)
    return fresh_project


def test_check_online_fails_naming_every_symbol_missing_online(nothing_online):
    result = run_cli("check-online")
    assert result.exit_code == 1
    for symbol in BUNDLED_SYMBOLS:
        assert f"{symbol} missing online" in result.output
    assert "python -m training materialize" in result.output


def test_predict_names_a_symbol_missing_online_and_the_command_to_run(registered, nothing_online):
    result = run_cli("predict", "--symbol", "AAPL")
    assert result.exit_code == 2
    assert "no online features for AAPL" in result.output
    assert "python -m training materialize" in result.output


# --- after materialize ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def materialized(project):
    result = run_cli("materialize")
    assert result.exit_code == 0, result.output
    return project


def test_check_online_passes_after_materialize(materialized):
    result = run_cli("check-online")
    assert result.exit_code == 0, result.output
    for symbol in BUNDLED_SYMBOLS:
        assert f"{symbol} " in result.output
    assert "matches the newest offline row of 5 symbol(s)" in result.output
    assert run_cli("check-online", "--symbols", "ibm,aapl").exit_code == 0


def test_check_online_names_the_symbol_and_feature_of_a_tampered_value(materialized, store):
    from training.serving.online_store import latest_offline_rows

    row = latest_offline_rows(["IBM"]).reset_index(drop=True)
    trend = ["symbol", "event_timestamp", "created_timestamp"]
    trend += [f.name for f in store.get_feature_view("trend").features]
    wrong = row[trend].copy()
    wrong["sma_5"] *= 1.001
    # Redis keeps a row unless the write is newer: stamp the forged row a second later than the bar.
    wrong["event_timestamp"] += pd.Timedelta(seconds=1)
    store.write_to_online_store("trend", wrong)
    try:
        result = run_cli("check-online")
        assert result.exit_code == 1
        assert "IBM trend:sma_5" in result.output
        assert "IBM scale_free_indicators:sma_5_rel" in result.output  # the derived form follows its input
        assert not any(f"{s} trend" in result.output for s in BUNDLED_SYMBOLS if s != "IBM")
    finally:  # the true row back, newer still, whatever the assertions said: later tests read IBM online
        right = row[trend].copy()
        right["event_timestamp"] += pd.Timedelta(seconds=2)
        store.write_to_online_store("trend", right)
    assert run_cli("check-online").exit_code == 0


def test_check_online_rejects_an_unknown_symbol(materialized):
    result = run_cli("check-online", "--symbols", "NOPE")
    assert result.exit_code == 2
    assert "unknown symbol(s): NOPE" in result.output


def test_predict_scores_every_bundled_symbol_with_the_champion(materialized, registered):
    latest = offline_model_rows([], latest=True)
    for symbol in BUNDLED_SYMBOLS:
        prediction = predict_json("--symbol", symbol.lower())
        assert prediction["symbol"] == symbol
        assert 0.0 <= prediction["probability"] <= 1.0
        assert prediction["class"] in (0, 1)
        assert pd.Timestamp(prediction["bar_timestamp"]) == latest.loc[symbol, "event_timestamp"]
        assert prediction["reference"] == "newest offline bar"
        assert prediction["model"] == f"{MODEL} v1 (champion)"
        assert prediction["feature_service"] == SERVICE
    text = run_cli("predict", "--symbol", "MSFT")
    assert text.exit_code == 0, text.output
    for label in ("probability", "class", "bar_timestamp", "2013-"):
        assert label in text.output


def test_online_prediction_equals_the_model_on_the_latest_offline_row(materialized, registered, store):
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor

    model = load_model()
    inputs = model_inputs(store)
    assert model.inputs == inputs and model.feature_service == SERVICE
    offline = offline_model_rows(inputs, latest=True)
    expected = model.estimator.predict_proba(offline.loc[BUNDLED_SYMBOLS, inputs].reset_index(drop=True))[:, 1]
    predictor = Predictor(store, model)
    for symbol, probability in zip(BUNDLED_SYMBOLS, expected, strict=True):
        prediction = predictor.predict(symbol)
        expected_features = offline.loc[symbol, inputs].to_numpy(dtype=float)
        np.testing.assert_allclose(list(prediction.features.values()), expected_features, rtol=1e-12, atol=0)
        assert prediction.probability == pytest.approx(probability, rel=1e-12, abs=0)


def test_the_universe_is_scored_as_predict_scores_each_symbol_and_kept_once(materialized, registered, store, conn):
    """One online read and one predict_proba give each symbol predict's numbers; the scores table takes a
    session's scores once (a second write changes nothing) and a changed score replaces its row."""
    import dataclasses

    from training.serving.daily_scores import SCORES_TABLE, upsert_scores
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor
    from training.serving.universe_scores import score_universe

    model = load_model()
    predictor = Predictor(store, model)
    result = score_universe(predictor, [*BUNDLED_SYMBOLS, "NOPE"])
    assert result.skipped == {"NOPE": "no bars in the offline store"}
    assert [s.symbol for s in result.scores] == list(BUNDLED_SYMBOLS)
    for score in result.scores:
        one = predictor.predict(score.symbol)
        assert (score.probabilities, score.probability) == (one.probabilities, one.probability)
        assert score.predicted_class == one.predicted_class
        assert score.bar_timestamp == score.feature_timestamp == one.bar_timestamp
    assert upsert_scores(conn, result.scores, model.uri) == len(BUNDLED_SYMBOLS)
    assert upsert_scores(conn, result.scores, model.uri) == 0
    corrected = dataclasses.replace(result.scores[0], probability=0.5, probabilities={"0": 0.5, "1": 0.5})
    assert upsert_scores(conn, [corrected], model.uri) == 1
    rows = conn.execute(f"SELECT symbol, model_name, model_version, probability FROM {SCORES_TABLE} ORDER BY 1")
    stored = {symbol: (name, version, p) for symbol, name, version, p in rows}
    assert stored[corrected.symbol] == (MODEL, "1", 0.5) and len(stored) == len(BUNDLED_SYMBOLS)


def test_serve_scores_many_symbols_in_one_post_with_the_numbers_of_the_scores_table(materialized, registered, store):
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor
    from training.serving.universe_scores import score_universe

    expected = score_universe(Predictor(store, load_model()), ["AAPL", "IBM", "NOPE"])
    with http_app(create_app_for(store)) as get:
        status, body = get("/predict", {"symbols": ["aapl", " IBM", "NOPE"]})
        assert status == 200, body
        assert body["scores"] == [score.as_dict() for score in expected.scores]
        assert body["not_scored"] == {"NOPE": "no bars in the offline store"}
        status, everything = get("/predict", {})
        assert status == 200 and [s["symbol"] for s in everything["scores"]] == BUNDLED_SYMBOLS
        assert get("/predict", {"symbols": [" "]})[0] == 422


def test_serve_refuses_a_body_that_is_not_json_and_a_symbol_with_a_control_character(materialized, registered, store):
    """A text/plain body was ignored (every symbol scored); a NUL reached PostgreSQL and came back as a 500."""
    with http_app(create_app_for(store)) as get:
        status, body = get("/predict", b'{"symbols": ["AAPL"]}', content_type="text/plain")
        assert status == 415 and "JSON body" in body["detail"] and "'text/plain'" in body["detail"], body
        for path, payload in (("/predict", {"symbols": ["AAPL\u0000"]}), ("/predict/AAPL%00", None)):
            status, body = get(path, payload)
            assert status == 422 and body["detail"] == "symbol 'AAPL\\x00' contains a control character", body
        status, body = get("/predict", b"", content_type="text/plain")  # no body at all: every symbol, as {}
        assert status == 200 and [s["symbol"] for s in body["scores"]] == BUNDLED_SYMBOLS
        status, body = get("/predict", {"symbols": ["AAPL"]}, content_type="application/json; charset=utf-8")
        assert status == 200 and [s["symbol"] for s in body["scores"]] == ["AAPL"]


def test_predict_refuses_features_stale_at_an_as_of_time_after_the_last_bar(materialized, registered):
    result = run_cli("predict", "--symbol", "AAPL", "--as-of", "2013-06-03")
    assert result.exit_code == 2
    assert "online features of AAPL are stale" in result.output
    assert "TTL" in result.output
    early = run_cli("predict", "--symbol", "AAPL", "--as-of", "2012-01-03T10:00")
    assert early.exit_code == 2
    assert "after --as-of 2012-01-03 15:00:00+00:00" in early.output  # 10:00 New York = 15:00 UTC
    within = predict_json("--symbol", "AAPL", "--as-of", "2013-03-05")  # 4 days after the last bar: fresh
    assert within["reference"] == "--as-of"


def test_predict_names_an_unknown_symbol_and_the_known_ones(materialized, registered):
    result = run_cli("predict", "--symbol", "ZZZZ")
    assert result.exit_code == 2
    assert "unknown symbol ZZZZ" in result.output
    assert "AAPL, FB, GOOG, IBM, MSFT" in result.output


def test_predict_serves_the_champion_or_an_explicit_version_never_an_unpromoted_one(materialized, registered):
    import mlflow

    from training.serving.model_loading import load_model

    uri = mlflow.MlflowClient().get_model_version(MODEL, "1").source  # the logged model, registered again
    for _ in range(2):
        mlflow.register_model(uri, "unpromoted-test")
    with pytest.raises(InputError, match=r"2 version\(s\) but none is 'champion'.*models:/unpromoted-test/2"):
        load_model(registered_model="unpromoted-test")
    mlflow.MlflowClient().set_registered_model_alias("unpromoted-test", "champion", "1")
    assert load_model(registered_model="unpromoted-test").label == "unpromoted-test v1 (champion)"
    explicit = load_model("models:/unpromoted-test/2")
    assert explicit.uri == "models:/unpromoted-test/2" and explicit.feature_service == SERVICE


def test_unreachable_mlflow_and_redis_give_one_line_errors(materialized, registered, monkeypatch):
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    result = run_cli("predict", "--symbol", "AAPL")
    assert result.exit_code == 3
    assert f"MLflow tracking server unreachable at http://127.0.0.1:{port}" in result.output
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    result = run_cli("predict", "--symbol", "AAPL")
    assert result.exit_code == 3
    assert "Redis unreachable" in result.output and "REDIS_URL" in result.output
    assert "Traceback" not in result.output


def test_predict_against_a_real_mlflow_server(materialized, store, mlflow_server, monkeypatch):
    """The session's `mlflow server` (tests/conftest.py), shared with the trainer's tests: whichever version
    is champion there, predict must serve it and agree with it on the offline row."""
    from training.serving.model_loading import load_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    log_model(model_inputs(store))
    prediction = predict_json("--symbol", "GOOG")
    assert prediction["model"].startswith(f"{MODEL} v") and prediction["model"].endswith("(champion)")
    model = load_model()
    assert model.label == prediction["model"]
    row = offline_model_rows(model.inputs, latest=True).loc[["GOOG"], model.inputs].reset_index(drop=True)
    assert prediction["probability"] == pytest.approx(model.estimator.predict_proba(row)[0, 1], rel=1e-12, abs=0)


def test_serve_answers_get_predict_like_the_predict_command(materialized, registered, store):
    from training.serving.http_app import create_app
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor

    with http_app(create_app(Predictor(store, load_model()))) as get:
        status, body = get("/predict/ibm")
        assert status == 200
        assert body["probability"] == predict_json("--symbol", "IBM")["probability"]
        status, body = get("/predict/ZZZZ")
        assert status == 404 and "unknown symbol ZZZZ" in body["detail"]
        status, body = get("/predict/IBM?as_of=2013-06-03")
        assert status == 409 and "stale" in body["detail"]


# --- issue 18: views that disagree, stores that stay silent -------------------------------------------


def test_predict_refuses_a_row_whose_views_describe_different_bars(materialized, registered, store):
    """A materialize stopped between views: one view holds a newer bar, the others the previous one."""
    from training.indicators.feature_table import VIEW_BAR_FIELDS
    from training.serving.online_store import latest_offline_rows

    row = latest_offline_rows(["IBM"]).reset_index(drop=True)
    momentum = ["symbol", "event_timestamp", "created_timestamp"]
    momentum += [f.name for f in store.get_feature_view("momentum").features]
    assert VIEW_BAR_FIELDS["momentum"] in momentum
    newer = row[momentum].copy()
    for column in ("event_timestamp", VIEW_BAR_FIELDS["momentum"]):
        newer[column] += pd.Timedelta(days=1)  # the next bar, written for this view only
    newer["roc_1"] += 1.0
    store.write_to_online_store("momentum", newer)
    try:
        result = run_cli("predict", "--symbol", "IBM")
        assert result.exit_code == 2, result.output
        assert "online features of IBM mix bars across feature views" in result.output
        assert "momentum: 2013-" in result.output and "price_action, trend, volatility, volume: 2013-" in result.output
        assert "python -m training materialize" in result.output
        with http_app(create_app_for(store)) as get:
            status, body = get("/predict/IBM")
        assert status == 409 and "mix bars" in body["detail"]
        checked = run_cli("check-online", "--symbols", "IBM")
        assert checked.exit_code == 1 and "momentum:momentum_bar_timestamp" in checked.output
    finally:  # materialize rewrites every symbol's newest offline row, even over a newer stamp
        assert run_cli("materialize").exit_code == 0
    assert run_cli("check-online").exit_code == 0
    assert predict_json("--symbol", "IBM")["bar_timestamp"] == row.loc[0, "event_timestamp"].isoformat()


def create_app_for(store):
    from training.serving.http_app import create_app
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor

    return create_app(Predictor(store, load_model()))


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    held, stop = [], threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


def store_moved_to(redis_url: str, monkeypatch):
    """A FeatureStore of this project whose online store is the Redis at ``redis_url`` (silent or refusing).

    Built from the project's own config without feature_store()'s up-front Redis check, as if Redis went away
    after start-up; with REDIS_URL set, the settings (and the scorer's messages) name Redis whatever the
    session's own online store is.
    """
    from feast import FeatureStore

    from training.feast_store.repository import repo_config
    from training.infra import settings

    monkeypatch.setenv("REDIS_URL", redis_url)
    return FeatureStore(repo_path=str(settings.FEATURE_REPO), config=repo_config())


def test_serve_answers_503_naming_a_silent_redis_within_the_timeout(materialized, registered, monkeypatch):
    monkeypatch.setenv("OHLCV_SERVICE_TIMEOUT", "1")
    with silent_server() as port:
        silent = store_moved_to(f"redis://127.0.0.1:{port}/0", monkeypatch)
        with http_app(create_app_for(silent)) as get:
            status, body = get("/health")
            assert status == 200 and body["model"].startswith(MODEL)
            for path in ("/predict/IBM", "/ready", "/predict/AAPL"):  # the second stays bounded too
                status, body = get(path)
                assert status == 503, body
                assert body["service"] == "Redis" and f"127.0.0.1:{port}" in body["detail"]
                assert "did not answer within 1 s" in body["detail"] and "REDIS_URL" in body["detail"]
            assert get("/health")[0] == 200


def test_serve_answers_503_naming_a_silent_postgresql_within_the_timeout(materialized, registered, store, monkeypatch):
    monkeypatch.setenv("OHLCV_SERVICE_TIMEOUT", "1")
    app = create_app_for(store)
    with http_app(app) as get:
        status, body = get("/ready")
        assert status == 200 and body["ready"] is True
        assert set(body["services"]) in ({"Redis", "PostgreSQL"}, {"SQLite online store", "PostgreSQL"})
        with silent_server() as port:
            monkeypatch.setenv("PGHOST", "127.0.0.1")
            monkeypatch.setenv("PGPORT", str(port))  # PostgreSQL went silent after start-up
            for path in ("/predict/IBM", "/ready", "/predict/ZZZZ"):
                status, body = get(path)
                assert status == 503, body
                assert body["service"] == "PostgreSQL" and "did not answer within 1 s" in body["detail"]
            assert get("/health")[0] == 200


def test_serve_sees_a_silent_redis_recover_on_the_first_ready_after_it_answers(materialized, registered, monkeypatch):
    """Redis behind a proxy that goes silent and comes back: while silent, /ready and /predict answer 503 naming
    Redis (a second /predict is refused while another call tries the store, or tries it itself); the first
    /ready after Redis answers again is 200, and /predict after it reads Redis again."""
    from benchmarks.tcp_proxy import switchable_proxy
    from training.infra import settings

    monkeypatch.setenv("OHLCV_SERVICE_TIMEOUT", "1")
    redis = settings.redis()  # the session's Redis; without REDIS_URL the rows live in SQLite, Redis has none
    host, port, db = (redis.host, redis.port, redis.db) if redis else ("127.0.0.1", 6379, 0)
    served = (200,) if redis else (404,)  # 404: Redis answered that it holds no row of IBM
    with switchable_proxy(host, port) as proxy:
        proxied = store_moved_to(f"redis://127.0.0.1:{proxy.port}/{db}", monkeypatch)
        with http_app(create_app_for(proxied)) as get:
            assert get("/ready")[0] == 200 and get("/predict/IBM")[0] in served
            proxy.silent = True
            for path in ("/ready", "/predict/IBM", "/predict/IBM", "/ready"):
                status, body = get(path)
                assert status == 503 and body["service"] == "Redis", (path, body)
                assert "did not answer within 1 s" in body["detail"] and "REDIS_URL" in body["detail"]
            proxy.silent = False
            status, body = get("/ready")
            assert status == 200 and body["ready"] is True, body
            status, body = get("/predict/IBM")
            assert status in served, body


def test_serve_answers_503_naming_a_redis_that_refuses(materialized, registered, monkeypatch):
    monkeypatch.setenv("OHLCV_SERVICE_TIMEOUT", "2")
    refusing = store_moved_to(f"redis://127.0.0.1:{free_port()}/0", monkeypatch)
    with http_app(create_app_for(refusing)) as get:
        status, body = get("/predict/IBM")
    assert status == 503 and body["service"] == "Redis" and "unreachable" in body["detail"], (status, body)


# --- issue 35: the fast online read ---------------------------------------------------------------------


def feast_rows(store, features, symbols: list[str]) -> list[dict]:
    columns = store.get_online_features(features, [{"symbol": s} for s in symbols]).to_dict()
    return [{name: values[i] for name, values in columns.items()} for i in range(len(symbols))]


def assert_same_rows(got: list[dict], want: list[dict]) -> None:
    """Equal rows (the same names; Feast's order follows a set's); NaN equals NaN only (None is not NaN)."""
    assert [sorted(row) for row in got] == [sorted(row) for row in want]
    for g, w in zip(got, want, strict=True):
        for name, value in w.items():
            nan = isinstance(value, float) and np.isnan(value)
            assert (isinstance(g[name], float) and np.isnan(g[name])) if nan else g[name] == value, (name, g, w)
            assert type(g[name]) is type(value), (name, g[name], value)


def test_the_fast_read_returns_exactly_what_feast_returns(materialized, registered, store):
    """Every service and predict's own request (the service plus each view's bar and version), over the bundled
    symbols, an unknown one and a repeated one: the same rows, names, values and types as Feast's
    get_online_features; on Redis without Feast's request path, elsewhere through it."""
    from training.infra import settings
    from training.serving.model_loading import load_model
    from training.serving.online_reader import OnlineReader
    from training.serving.scorer import Predictor

    predictor = Predictor(store, load_model())
    assert predictor.reader.fast == (settings.redis() is not None)
    symbols = [*BUNDLED_SYMBOLS, "NOPE", "AAPL"]
    requests = [predictor.refs, *(store.get_feature_service(s.name) for s in store.list_feature_services())]
    for features in requests:
        reader = OnlineReader(store, features)
        assert reader.fast == predictor.reader.fast
        assert_same_rows(reader.read_many(symbols), feast_rows(store, features, symbols))
    rows = predictor.read_many(symbols)
    assert all(row["bar_timestamp"] is not None for row in rows[:5]) and rows[5]["bar_timestamp"] is None


def test_the_fast_read_refuses_a_row_mixing_two_versions_of_one_bar_like_feast(materialized, registered, store):
    """One view holds another version of IBM's newest bar (same bar stamp, another row version): the fast read
    serves what Feast serves, and predict refuses it naming that view, with Feast's row refused the same way."""
    from training.indicators.feature_table import VIEW_VERSION_FIELDS
    from training.serving.model_loading import load_model
    from training.serving.online_store import latest_offline_rows, overwriting
    from training.serving.scorer import MixedVersions, Predictor

    predictor = Predictor(store, load_model())
    row = latest_offline_rows(["IBM"]).reset_index(drop=True)
    trend = ["symbol", "event_timestamp", "created_timestamp"]
    trend += [f.name for f in store.get_feature_view("trend").features]
    other = row[trend].copy()
    other[VIEW_VERSION_FIELDS["trend"]] += 1  # a correction one microsecond later, for this view only
    with overwriting(store):  # at the bar's own stamp, which Redis would otherwise keep
        store.write_to_online_store("trend", other)
    try:
        fast, feast = predictor.read("IBM"), feast_rows(store, predictor.refs, ["IBM"])[0]
        assert_same_rows([fast], [feast])
        with pytest.raises(MixedVersions, match="mix versions of the bar of") as refused:
            predictor.predict("IBM", as_of=fast["bar_timestamp"])
        assert "trend: " in str(refused.value)
        with pytest.raises(MixedVersions) as feasts:
            predictor.check("IBM", feast, feast["bar_timestamp"], "--as-of")
        assert str(feasts.value) == str(refused.value)
    finally:  # the true row back at its own stamp, whatever the assertions said: later tests read IBM online
        with overwriting(store):
            store.write_to_online_store("trend", row[trend])
    predictor.predict("IBM", as_of=fast["bar_timestamp"])
    assert run_cli("check-online").exit_code == 0
