"""train end to end against real MLflow backends, reproducibility, and the fitted-on-training-rows property."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import imported_by, run_cli
from training.model.estimator import early_stopping_slice, fit_with_early_stopping
from training.validation.split_invariants import LeakageError, check_no_overlap

EXPECTED_ARTIFACTS = {
    "feature_importance.csv",
    "feature_importance.png",
    "roc.png",
    "confusion_matrix.png",
    "equity_curve.png",
    "holdout_daily_returns.csv",
    "config.yaml",
    "dataset_metadata.json",
    "cv_folds.json",
    "cv_splits.json",  # the folds and fitted preprocessing verify-leakage --run audits
    "input_distribution.json",  # the training rows' percentiles per input, update's drift reference
    "validity",  # validity.json, cv_path_returns.csv, pbo_logits.png, path_sharpes.png
}
VALIDITY_METRICS = (
    "validity/trials",
    "validity/pbo_configurations",
    "validity/holdout_psr",
    "validity/holdout_dsr",
    "validity/holdout_min_trl_bars",
    "validity/holdout_sharpe",
    "validity/cv_psr_mean",
    "validity/cv_dsr_mean",
)


def _train(dataset_dir, results, *extra: str):
    result = run_cli("train", "--dataset", str(dataset_dir), "--results", str(results), *extra)
    assert result.exit_code == 0, result.output
    return json.loads(results.read_text())


def audited_copy(source: Path, folder: Path, *audit_options: str) -> Path:
    """A copy of a dataset with a passed leakage report beside it (the shared artifact stays untouched)."""
    shutil.copytree(source, folder)
    result = run_cli("verify-leakage", "--dataset", str(folder), "--skip-rebuild", *audit_options)
    assert result.exit_code == 0, result.output
    return folder


def model_config(folder: Path, registered_model: str, **mlflow: object) -> Path:
    """A --config file registering under its own model name, so each test decides its own champion."""
    path = folder / f"{registered_model}.yaml"
    path.write_text(yaml.safe_dump({"mlflow": {"registered_model": registered_model, **mlflow}}))
    return path


@pytest.fixture(scope="module")
def audited_in_a_process(bundled_dataset, tmp_path_factory) -> tuple[Path, list[str]]:
    """A copy of the bundled dataset audited (--skip-rebuild) by a process of its own, and what it imported."""
    folder = tmp_path_factory.mktemp("audited") / "panel"
    shutil.copytree(bundled_dataset[0], folder)
    return folder, imported_by("verify-leakage", "--dataset", str(folder), "--skip-rebuild")


@pytest.fixture(scope="module")
def audited(audited_in_a_process) -> Path:
    return audited_in_a_process[0]


@pytest.fixture(scope="module")
def local_run_in_a_process(audited, tmp_path_factory) -> tuple[dict, list[str]]:
    """The default train on the audited dataset by a process of its own: its results, and what it imported."""
    folder = tmp_path_factory.mktemp("results")
    config, results = model_config(folder, "train-tests-local"), folder / "results.json"
    imported = imported_by("train", "--dataset", str(audited), "--results", str(results), "--config", str(config))
    return json.loads(results.read_text()), imported


@pytest.fixture(scope="module")
def local_run(local_run_in_a_process) -> dict:
    return local_run_in_a_process[0]


def test_train_and_the_audit_do_not_import_feast(audited_in_a_process, local_run_in_a_process):
    assert "feast" not in audited_in_a_process[1]
    imported = local_run_in_a_process[1]
    assert "feast" not in imported and "lightgbm" in imported  # the probe does see what a command imports


def _assert_complete_run(client, run_id: str, dataset) -> None:
    run = client.get_run(run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["model.num_leaves"] == "31" and params["model.learning_rate"] == "0.05"
    assert params["model.bagging_freq"] == "1" and params["cv.n_splits"] == "5" and params["cv.embargo"] == "0.01"
    for name in ("accuracy", "f1", "roc_auc", "log_loss", "information_coefficient", "backtest_sharpe",
                 "backtest_max_drawdown", "best_iteration"):  # fmt: skip
        assert f"cv/{name}_mean" in metrics and f"cv/{name}_std" in metrics
        assert f"holdout/{name}" in metrics
        history = client.get_metric_history(run_id, f"cv/{name}")
        assert sorted(m.step for m in history) == [0, 1, 2, 3, 4]  # one value per fold
    for name in ("baseline_majority/cv/accuracy_mean", "baseline_buy_and_hold/cv/backtest_sharpe_mean",
                 "baseline_majority/holdout/roc_auc", "baseline_buy_and_hold/holdout/backtest_sharpe",
                 "holdout/tp", "holdout/tn"):  # fmt: skip
        assert name in metrics
    assert tags["feature_service"] == "technical_model_v1"
    assert json.loads(tags["label_config"])["horizon"] == 5
    assert tags["validation_method"].startswith("purged_kfold(n_splits=5, embargo=0.01)")
    assert len(tags["git_commit"]) == 40
    assert tags["dataset_fingerprint"] == dataset.metadata["fingerprint"]
    assert tags["leakage_check"] == "passed" and tags["skip_audit"] == "false" and "audit_findings" not in tags
    assert tags["leakage_check_run"] == "passed"  # train's own run audit, before the promotion
    assert {a.path for a in client.list_artifacts(run_id)} >= EXPECTED_ARTIFACTS
    assert set(VALIDITY_METRICS) <= set(metrics)
    assert tags["trials"] == str(int(metrics["validity/trials"])) and {"trial_family", "trial_key"} <= set(tags)
    assert {a.path for a in client.list_artifacts(run_id, "validity")} == {
        "validity/validity.json",
        "validity/cv_path_returns.csv",
        "validity/pbo_logits.png",
        "validity/path_sharpes.png",
    }


def _assert_registered_model(client, results: dict, dataset) -> None:
    import mlflow

    version = client.get_model_version_by_alias(results["registered_model"], "champion")
    assert str(version.version) == results["model_version"] and version.run_id == results["run_id"]
    assert results["promotion"]["promoted"] and results["promotion"]["reason"].startswith("no champion yet")
    assert client.get_run(results["run_id"]).data.tags["promotion"] == "champion"
    assert results["audit"]["passed"] and not results["audit"]["skipped"]
    info = mlflow.models.get_model_info(results["model_uri"])
    assert [c.name for c in info.signature.inputs.inputs] == dataset.features
    assert info.saved_input_example_info is not None
    model = mlflow.sklearn.load_model(results["model_uri"])
    rows = dataset.rows("validation")[dataset.features].head(20)
    proba = model.predict_proba(rows)
    assert proba.shape == (20, 2) and np.allclose(proba.sum(axis=1), 1.0)


def test_train_logs_a_complete_run_to_the_local_backend(local_run, bundled_dataset):
    from mlflow.tracking import MlflowClient

    _, dataset = bundled_dataset
    client = MlflowClient(local_run["tracking_uri"])
    _assert_complete_run(client, local_run["run_id"], dataset)
    _assert_registered_model(client, local_run, dataset)
    assert local_run["cv"]["roc_auc_mean"] == pytest.approx(
        client.get_run(local_run["run_id"]).data.metrics["cv/roc_auc_mean"]
    )


def test_same_seed_and_data_give_the_same_metrics_and_an_equal_run_is_not_promoted(local_run, audited, tmp_path):
    from mlflow.tracking import MlflowClient

    again = _train(audited, tmp_path / "again.json", "--config", str(model_config(tmp_path, "train-tests-local")))
    assert again["run_id"] != local_run["run_id"]
    assert again["cv"] == local_run["cv"]
    # An identical re-run is the same trial: it adds none (N grows only by other trials of the family run
    # in between), and the same Sharpe ratio is deflated as much or more, never less.
    from training.model.trials import TRIAL_TAG, family_records

    tags = {r: MlflowClient().get_run(r).data.tags for r in (local_run["run_id"], again["run_id"])}
    assert tags[again["run_id"]][TRIAL_TAG] == tags[local_run["run_id"]][TRIAL_TAG]
    records = family_records(MlflowClient(), tags[again["run_id"]]["trial_family"])
    assert again["validity"]["trials"] == len({r.data.tags[TRIAL_TAG] for r in records}) < len(records)
    assert again["validity"]["trials"] >= local_run["validity"]["trials"]
    assert again["validity"]["holdout"]["psr"] == pytest.approx(local_run["validity"]["holdout"]["psr"])
    assert again["validity"]["holdout"]["dsr"] <= local_run["validity"]["holdout"]["dsr"] + 1e-12
    assert again["holdout"] == local_run["holdout"]
    # An equal run does not beat the champion: it stays a registered version without the alias.
    assert again["promotion"]["promoted"] is False
    assert "does not beat champion v" in again["promotion"]["reason"]
    assert again["promotion"]["champion_version"] == local_run["model_version"]
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("train-tests-local", "champion").version) == local_run["model_version"]
    assert client.get_model_version("train-tests-local", again["model_version"]).aliases == []
    assert client.get_run(again["run_id"]).data.tags["promotion"] == "not promoted"


def test_train_against_a_real_mlflow_server(mlflow_server, bundled_dataset, audited, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    _, dataset = bundled_dataset
    previous = mlflow.get_tracking_uri()  # train sets the process-wide URI; a later local-backend test needs it back
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    try:
        results = _train(audited, tmp_path / "server.json", "--config",
                         str(model_config(tmp_path, "train-tests-server")))  # fmt: skip
        client = MlflowClient(tracking_uri=mlflow_server)
        _assert_complete_run(client, results["run_id"], dataset)
        mlflow.set_tracking_uri(mlflow_server)
        _assert_registered_model(client, results, dataset)
    finally:
        mlflow.set_tracking_uri(previous)


def test_cpcv_is_refused_until_audited_then_logs_backtest_paths(bundled_dataset, audited, tmp_path):
    from mlflow.tracking import MlflowClient

    cpcv = ("--cv", "cpcv", "--n-splits", "4")
    refused = run_cli("train", "--dataset", str(audited), "--results", str(tmp_path / "no.json"), *cpcv)
    assert refused.exit_code == 2, refused.output
    assert "audited the folds of cv" in refused.output and "this run uses cv" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and not (tmp_path / "no.json").exists()
    folder = audited_copy(bundled_dataset[0], tmp_path / "cpcv", *cpcv)
    results = _train(folder, tmp_path / "cpcv.json", *cpcv, "--config", str(model_config(tmp_path, "train-tests-cpcv")))
    metrics = MlflowClient().get_run(results["run_id"]).data.metrics
    assert "cpcv/path_sharpe_mean" in metrics
    assert results["validity"]["cv_paths"]["paths"] == 3  # C(3, 1) paths of CPCV(4, 2)
    pbo = results["validity"]["pbo"]  # over the family's configurations, never over one configuration's paths
    if pbo["configurations"] < 8:
        assert pbo["pbo"] is None and "validity/pbo" not in metrics and "fewer give" in pbo["reason"]
    else:
        assert 0 <= metrics["validity/pbo"] <= 1 and "validity/pbo_logit_q50" in metrics
    assert len(MlflowClient().get_metric_history(results["run_id"], "cv/roc_auc")) == 6  # C(4, 2) splits


def test_verify_leakage_run_audits_the_folds_and_preprocessing_the_run_used(local_run, audited, bundled_dataset):
    from training.dataset.offline_bars import load_bars
    from training.leakage import RUN_CHECKS, audit_config, run_audit
    from training.leakage.check_preprocessing import recorded_positions
    from training.leakage.panel import BarHistory

    results = Path(audited).parent / "results_for_run_audit.json"
    results.write_text(json.dumps(local_run))
    result = run_cli("verify-leakage", "--dataset", str(audited), "--skip-rebuild", "--run", str(results))
    assert result.exit_code == 0, result.output
    assert "PASS preprocessing" in result.output and f"run {local_run['run_id']}'s recorded folds" in result.output
    report = json.loads((Path(audited) / f"leakage_report_run_{local_run['run_id']}.json").read_text())
    assert list(report["checks"]) == list(RUN_CHECKS) and report["status"] == "passed"
    assert report["checks"]["preprocessing"]["counts"]["folds"] == 5

    import mlflow

    local = mlflow.artifacts.download_artifacts(run_id=local_run["run_id"], artifact_path="cv_splits.json")
    record = json.loads(Path(local).read_text())
    record["run_id"] = local_run["run_id"]
    fold = record["folds"][2]
    assert all(len(run) == 2 for run in fold["fit"])  # runs [first, last + 1): a few per fold
    scored = recorded_positions(fold["test"])[:50]
    fold["fit"] = sorted(recorded_positions(fold["fit"]).tolist() + scored.tolist())  # fitted on scored rows too
    _, dataset = bundled_dataset
    bars = BarHistory.of(load_bars(dataset.metadata["symbols"]))
    leaky = run_audit(dataset, audit_config(dataset), bars, record=record, progress=lambda m: None)
    assert leaky.failed == ["preprocessing"]
    assert "fold 2: 50 fit rows are scored rows" in leaky.check("preprocessing").message


def test_unreachable_mlflow_is_one_line_naming_the_setting(bundled_dataset, tmp_path, monkeypatch):
    folder, _ = bundled_dataset
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    result = run_cli("train", "--dataset", str(folder), "--results", str(tmp_path / "r.json"))
    assert result.exit_code == 3
    assert "MLflow tracking server unreachable at http://127.0.0.1:9" in result.output
    assert "MLFLOW_TRACKING_URI" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.json").exists()


def test_train_on_a_folder_that_is_not_a_dataset(tmp_path):
    result = run_cli("train", "--dataset", str(tmp_path))
    assert result.exit_code == 2 and "is not a dataset" in result.output


# -- preprocessing and early stopping only ever see the rows they may -------------------------------------------


def _panel(draw_seed: int, n_dates: int, n_symbols: int, horizon: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(draw_seed)
    dates = pd.date_range("2020-01-01", periods=n_dates, freq="D")
    t0 = np.repeat(dates.to_numpy(), n_symbols)
    t1 = t0 + np.timedelta64(1, "D") * rng.integers(1, horizon + 1, len(t0))
    X = pd.DataFrame(rng.normal(size=(len(t0), 4)) * [1, 10, 100, 1000], columns=list("abcd"))
    return X, t0, t1


def assert_fit_ignores_rows_outside_its_fit_slice(fit, X, y, t0, t1) -> None:
    """Changing any row the fitted preprocessing may not see leaves the fitted scaler unchanged."""
    fit_positions, _ = early_stopping_slice(t0, t1, 0.2)
    baseline = fit(X, y, t0, t1).named_steps["scaler"]
    altered = X.copy()
    outside = np.setdiff1d(np.arange(len(X)), fit_positions)
    altered.iloc[outside] = altered.iloc[outside] * 1000 + 7
    changed = fit(altered, y, t0, t1).named_steps["scaler"]
    if not (np.allclose(baseline.center_, changed.center_) and np.allclose(baseline.scale_, changed.scale_)):
        raise LeakageError("preprocessing", "the scaler changed when rows outside its fit slice changed")


def _model(rounds: int = 5):
    from training.config import default_config

    return default_config().model.model_copy(
        update={"num_boost_round": rounds, "early_stopping_rounds": 2, "early_stopping_fraction": 0.2}
    )


def _project_fit(X, y, t0, t1):
    return fit_with_early_stopping(X, y, np.ones(len(y)), t0, t1, _model()).pipeline


def _leaky_fit(X, y, t0, t1):
    """A deliberately leaky fit: the scaler sees every row, early-stopping slice included."""
    from training.model.estimator import make_pipeline

    return make_pipeline(_model()).fit(X, y)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n_dates=st.integers(40, 80), n_symbols=st.integers(1, 3), horizon=st.integers(1, 6))
def test_preprocessing_is_fitted_on_the_fit_rows_only(seed, n_dates, n_symbols, horizon):
    X, t0, t1 = _panel(seed, n_dates, n_symbols, horizon)
    y = (np.arange(len(X)) % 2).astype(int)
    assert_fit_ignores_rows_outside_its_fit_slice(_project_fit, X, y, t0, t1)


def test_the_preprocessing_check_catches_a_scaler_fitted_on_all_rows():
    X, t0, t1 = _panel(1, 60, 2, 3)
    y = (np.arange(len(X)) % 2).astype(int)
    with pytest.raises(LeakageError, match="scaler changed"):
        assert_fit_ignores_rows_outside_its_fit_slice(_leaky_fit, X, y, t0, t1)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_dates=st.integers(10, 120), n_symbols=st.integers(1, 4),
       horizon=st.integers(1, 10), fraction=st.floats(0.05, 0.5))  # fmt: skip
def test_early_stopping_slice_is_purged_from_the_fit_rows(seed, n_dates, n_symbols, horizon, fraction):
    _, t0, t1 = _panel(seed, n_dates, n_symbols, horizon)
    fit, watch = early_stopping_slice(t0, t1, fraction)
    assert len(watch) and len(np.intersect1d(fit, watch)) == 0
    assert t0[watch].min() > t0[fit].max() if len(fit) else True
    check_no_overlap(t0, t1, fit, watch)
