"""PBO fetches every earlier trial's path returns from MLflow without a download progress bar on stderr."""

from __future__ import annotations

import os

import pandas as pd

from training.infra.mlflow_download import download_artifact
from training.model.overfitting import PATH_RETURNS, _configurations

BAR = "Downloading artifacts"  # what MLflow's tqdm bar starts with
SWITCH = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def test_fetching_earlier_runs_returns_for_pbo_prints_no_progress_bar(tmp_path, monkeypatch, capfd):
    import mlflow

    monkeypatch.delenv(SWITCH, raising=False)  # MLflow's default: a bar per download
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("pbo-download", artifact_location=(tmp_path / "artifacts").as_uri())
    returns = pd.DataFrame({"path_0": [0.01, -0.02, 0.005]}, index=pd.date_range("2020-01-01", periods=3, tz="UTC"))
    runs = {}
    for key in ("a", "b"):
        with mlflow.start_run(experiment_id=experiment) as run:
            folder = tmp_path / key
            (folder / PATH_RETURNS).parent.mkdir(parents=True)
            returns.to_csv(folder / PATH_RETURNS)
            mlflow.log_artifacts(str(folder))
        runs[key] = run.info.run_id
    capfd.readouterr()
    mlflow.artifacts.download_artifacts(run_id=runs["a"], artifact_path=PATH_RETURNS)
    assert BAR in capfd.readouterr().err  # what the test guards against: MLflow draws it by default

    compared = _configurations(runs, "mine", returns["path_0"])
    assert list(compared.columns) == ["mine", "a", "b"] and len(compared) == 3
    assert download_artifact(runs["b"], PATH_RETURNS).endswith("cv_path_returns.csv")
    assert BAR not in capfd.readouterr().err
    assert SWITCH not in os.environ  # put back as it was: other downloads keep MLflow's behaviour
