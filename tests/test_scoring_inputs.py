"""Rows the model cannot score, models that could run code, unknown symbols in a larger universe.

The module has its own database and Feast project, filled as a user would (ingest, compute-features,
feast apply, materialize) with AAPL's real history beside symbols built to be unusable: a 1-bar symbol,
a newest bar of zero volume, a zero-volume bar just before the newest. A registered model is scored
against them through `predict` and a live `serve`.
"""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SESSION, _create_database, _drop_database, http_app, run_cli, run_module
from tests.test_online import free_port, log_model, model_inputs
from training.infra import db, settings

DATABASE = f"{SESSION}_scoring"
SHORT = ["AAPM", "ONE", "TWO", "THREE"]  # one bar each (AAPM is close to AAPL, for the suggestion)
SYMBOLS = sorted(["AAPL", "ZPREV", "ZVOL", *SHORT])
VOLUME_FORMS = ["volume_sma_5_rel", "volume_sma_20_rel"]


def _bars(raw: pd.DataFrame) -> pd.DataFrame:
    aapl = raw[raw["Ticker"] == "AAPL"].reset_index(drop=True)
    newest = aapl.tail(1)
    zvol = aapl.assign(Ticker="ZVOL")
    zvol.loc[zvol.index[-1], "Volume"] = "0"  # newest bar: the volume forms divide by zero
    zprev = aapl.assign(Ticker="ZPREV")
    zprev.loc[zprev.index[-2], "Volume"] = "0"  # the bar before: volume_change divides by zero
    short = [newest.assign(Ticker=symbol) for symbol in SHORT]
    return pd.concat([aapl, zvol, zprev, *short], ignore_index=True)


@pytest.fixture(scope="module")
def scoring(isolated_services, bundled_raw, tmp_path_factory):
    """Own database, Feast project and MLflow backend: materialized, with a registered champion."""
    pg = settings.postgres()
    folder = tmp_path_factory.mktemp("scoring")
    _create_database(pg, DATABASE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGDATABASE", DATABASE)
        patch.setenv("FEAST_PROJECT", DATABASE)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        patch.setenv("OHLCV_STATE_DIR", str(folder))
        path = folder / "bars.csv"
        _bars(bundled_raw).to_csv(path, index=False)
        for args in (("ingest", str(path)), ("compute-features",)):
            result = run_cli(*args)
            assert result.exit_code == 0, result.output
        run_module("feast", "apply")
        assert run_cli("materialize").exit_code == 0
        from training.feast_store.repository import feature_store

        store = feature_store()
        log_model(model_inputs(store))
        yield store
        store._get_provider().teardown_infra(DATABASE, store.list_feature_views(), store.list_entities())
    _drop_database(pg, DATABASE)


def one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def close(message: str) -> set[str]:
    """The suggested symbols of an unknown-symbol message (their order is difflib's)."""
    return set(message.split("closest: ")[1].split(", "))


# --- zero volume: NaN, never inf, offline and online ----------------------------------------------


def test_zero_volume_gives_nan_volume_forms_not_infinity():
    from training.indicators.compute import compute_symbol
    from training.indicators.scale_free import scale_free_forms

    n = 40
    volume = np.full(n, 1000.0)
    volume[[20, 39]] = 0.0
    close = 10.0 + np.arange(n) * 0.1
    bars = {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": volume}
    features = compute_symbol(bars)
    change = features["volume_change"]
    assert np.isnan(change[21]) and np.isnan(change[0])  # after a zero-volume bar, and the first bar
    assert change[20] == -1.0 and change[39] == -1.0  # down to zero is a defined change
    assert np.isfinite(np.delete(change, [0, 21])).all()
    import talib

    np.testing.assert_array_equal(features["volume_sma_5"][4:], talib.SMA(volume, timeperiod=5)[4:])

    forms = {k: np.asarray(v) for k, v in scale_free_forms({**bars, **features}).items()}
    for name in VOLUME_FORMS:
        assert np.isnan(forms[name][[20, 39]]).all(), name
        assert not np.isinf(forms[name]).any(), name


def test_the_feature_table_stores_null_after_a_zero_volume_bar(scoring):
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (symbol) symbol, volume, volume_change FROM features.technical_indicators "
            "WHERE symbol IN ('ZVOL', 'ZPREV') ORDER BY symbol, event_timestamp DESC"
        ).fetchall()
        infinite = conn.execute(
            "SELECT count(*) FROM features.technical_indicators WHERE volume_change IN ('Infinity', '-Infinity')"
        ).fetchone()[0]
    newest = {symbol: (volume, change) for symbol, volume, change in rows}
    assert newest["ZPREV"][1] is None  # NULL: the previous bar traded nothing
    assert newest["ZVOL"] == (0.0, -1.0)  # down to zero is a defined change
    assert infinite == 0


def test_the_on_demand_forms_of_a_stored_zero_volume_bar_are_nan(scoring):
    from training.indicators.scale_free import scale_free_forms

    with db.connect() as conn:
        table = db.copy_out(conn, "SELECT * FROM features.technical_indicators WHERE symbol = 'ZVOL'")
    forms = scale_free_forms({c: table[c].tolist() for c in table.columns})
    zero = table.index[table["volume"] == 0]
    assert all(math.isnan(forms[name][i]) for name in VOLUME_FORMS for i in zero)


def test_online_and_offline_agree_on_the_unusable_rows(scoring):
    """Every feature and scale-free form online equals the newest offline row, NaN for NaN (check-online)."""
    result = run_cli("check-online")
    assert result.exit_code == 0, result.output
    assert f"matches the newest offline row of {len(SYMBOLS)} symbol(s)" in result.output


# --- predict and serve refuse unusable rows ---------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "named", "count"),
    [
        ("ONE", ["sma_5_rel", "rsi_14", "volume_change", "macd_hist_norm"], 21),  # 1 bar: only 2 of 23 defined
        ("ZVOL", VOLUME_FORMS, 2),
        ("ZPREV", ["volume_change"], 1),
    ],
)
def test_predict_refuses_a_row_with_missing_or_non_finite_inputs(scoring, symbol, named, count):
    line = one_line_error(run_cli("predict", "--symbol", symbol), 2)
    assert f"cannot score {symbol}" in line
    assert f"for {count} of 23 model inputs" in line
    for name in named:
        assert name in line
    assert "zero-volume" in line and "warm-up" in line


def test_predict_still_scores_a_usable_row(scoring):
    result = run_cli("predict", "--json", "--symbol", "AAPL")
    assert result.exit_code == 0, result.output
    assert 0.0 <= json.loads(result.output.strip().splitlines()[-1])["probability"] <= 1.0


def test_unknown_symbols_are_named_with_a_few_known_ones_and_the_count(scoring, tmp_path):
    predicted = one_line_error(run_cli("predict", "--symbol", "AAPZ"), 2)
    assert "unknown symbol AAPZ" in predicted
    assert "the offline store has 7 symbols; closest: " in predicted and close(predicted) == {"AAPL", "AAPM"}
    checked = one_line_error(run_cli("check-online", "--symbols", "AAPZ,NOPE"), 2)
    assert "unknown symbol(s): AAPZ, NOPE; the offline store has 7 symbols; closest: " in checked
    assert close(checked) == {"AAPL", "AAPM"}
    built = one_line_error(run_cli("build-dataset", "--symbols", "AAPZ", "--out", str(tmp_path / "out")), 2)
    assert "unknown symbol(s): AAPZ; the offline store has 7 symbols" in built
    assert not (tmp_path / "out").exists()
    many = [f"X{i:04d}" for i in range(3000)]
    line = one_line_error(run_cli("check-online", "--symbols", ",".join(many)), 2)
    assert "X0000, X0001, X0002, X0003, X0004 and 2,995 more" in line and len(line) < 300
    for text in (predicted, checked, built):
        assert "ZPREV" not in text and "THREE" not in text  # not every symbol: a few and the count


def test_serve_answers_422_for_an_unusable_row_and_a_short_404(scoring):
    from training.serving.http_app import create_app
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor

    with http_app(create_app(Predictor(scoring, load_model()))) as get:
        status, body = get("/predict/zvol")
        assert status == 422 and "cannot score ZVOL" in body["detail"] and "volume_sma_5_rel" in body["detail"]
        status, body = get("/predict/one")
        assert status == 422 and "for 21 of 23 model inputs" in body["detail"]
        status, body = get("/predict/AAPZ")
        assert status == 404 and "7 symbols; closest: " in body["detail"] and "ZPREV" not in body["detail"]
        assert close(body["detail"]) == {"AAPL", "AAPM"}
        assert get("/predict/aapl")[0] == 200


# --- models that could run code when loaded ------------------------------------------------------


class _Armed:
    """Unpickling this creates a file: the proof that a model's code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickle_model(folder, marker) -> str:
    from mlflow.models import Model

    folder.mkdir()
    (folder / "model.pkl").write_bytes(pickle.dumps(_Armed(str(marker))))
    model = Model()
    model.add_flavor("sklearn", pickled_model="model.pkl", serialization_format="cloudpickle", sklearn_version="1")
    model.save(str(folder / "MLmodel"))
    return str(folder)


def test_a_pickle_model_is_refused_before_it_is_deserialised(isolated_services, pipeline, tmp_path):
    marker = tmp_path / "code_ran"
    uri = _pickle_model(tmp_path / "crafted", marker)
    for command in (("predict", "--symbol", "AAPL"), ("serve", "--port", str(free_port()))):
        line = one_line_error(run_cli(*command, "--model-uri", uri), 2)
        assert "is saved as cloudpickle, which can run code when loaded" in line and "--trust-pickle" in line
        assert not marker.exists()
    # The control: the crafted model is armed, and only the explicit option lets it load (and run).
    result = run_cli("predict", "--symbol", "AAPL", "--model-uri", uri, "--trust-pickle")
    assert result.exit_code == 2 and marker.exists()


def test_a_skops_model_with_foreign_types_is_refused(isolated_services, pipeline, tmp_path):
    import os

    import mlflow.sklearn
    import skops.io
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = Pipeline([("f", FunctionTransformer(os.getcwd))])
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))  # what MLflow's MLmodel then trusts
    mlflow.sklearn.save_model(model, str(tmp_path / "m"), serialization_format="skops", skops_trusted_types=trusted)
    line = one_line_error(run_cli("predict", "--symbol", "AAPL", "--model-uri", str(tmp_path / "m")), 2)
    assert "needs types the trainer never writes" in line and "getcwd" in line and "--trust-pickle" in line


def test_the_trainers_model_needs_no_type_beyond_the_fixed_skops_list():
    """SKOPS_TYPES must grow with the trainer, or predict would refuse the models `train` registers."""
    import skops.io

    from training.config import default_config
    from training.model.estimator import fit_with_early_stopping
    from training.serving.model_loading import SKOPS_TYPES

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(600, 4)), columns=list("abcd"))
    y = (X["a"] + rng.normal(size=600) > 0).astype(int).to_numpy()
    t0 = np.arange(600).astype("datetime64[D]")
    fitted = fit_with_early_stopping(X, y, np.ones(600), t0, t0 + 3, default_config().model)
    assert set(skops.io.get_untrusted_types(data=skops.io.dumps(fitted.pipeline))) <= SKOPS_TYPES
