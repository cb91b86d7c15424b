"""A logged ``train`` run as the input of another command: its configuration and its dataset, checked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_DATASET = Path("artifacts/dataset")


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    config_file: Path  # the run's config.yaml, downloaded
    dataset: Any  # training.dataset.artifact.Dataset
    dataset_path: Path


def run_id_of(run: str) -> str:
    """A run id, or the results JSON ``train`` (or tune's winner_results.json) wrote, which names it."""
    path = Path(run)
    return str(json.loads(path.read_text()).get("run_id")) if path.suffix == ".json" and path.exists() else run


def load_logged_run(run: str, dataset_path: Path | None) -> LoggedRun:
    """The run's configuration file and dataset (its ``dataset.path`` unless ``dataset_path`` names a moved copy),
    refused in one line when the run is not in MLflow, has no config.yaml, or the dataset's fingerprint is not
    the run's."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from training.dataset import artifact
    from training.errors import InputError
    from training.infra import settings
    from training.infra.mlflow_download import download_artifact

    run_id = run_id_of(run)
    mlflow.set_tracking_uri(settings.check_mlflow())
    try:
        logged = mlflow.MlflowClient().get_run(run_id)
    except MlflowException as error:
        raise InputError(f"run {run_id} is not in MLflow ({error.error_code})") from None
    path = dataset_path or Path(logged.data.params.get("dataset.path", DEFAULT_DATASET))
    dataset = artifact.load(path)
    if dataset.metadata["fingerprint"] != logged.data.tags.get("dataset_fingerprint"):
        raise InputError(
            f"dataset {path} has fingerprint {dataset.metadata['fingerprint'][:12]}, run {run_id} was trained on "
            f"{str(logged.data.tags.get('dataset_fingerprint'))[:12]}: pass the run's dataset with --dataset"
        )
    try:
        config_file = download_artifact(run_id, "config.yaml")
    except MlflowException as error:
        raise InputError(f"run {run_id} has no config.yaml: not a train run ({error.error_code})") from None
    return LoggedRun(run_id, Path(config_file), dataset, path)
