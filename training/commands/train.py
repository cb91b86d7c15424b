"""``train``: purged CV of the LightGBM baseline, final fit, hold-out evaluation, one MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.option("--dataset", "dataset_path", type=click.Path(path_type=Path), default=Path("artifacts/dataset"),
              show_default=True, help="Folder written by build-dataset.")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML overriding the defaults.")
@click.option("--results", type=click.Path(path_type=Path), default=Path("artifacts/train_results.json"),
              show_default=True, help="Where to write the results JSON (carries the MLflow run id).")  # fmt: skip
@click.option("--cv", "cv_method", type=click.Choice(["purged_kfold", "cpcv"]), help="Validation method.")
@click.option("--n-splits", type=int, help="Folds (purged_kfold) or groups (cpcv).")
def train(dataset_path: Path, config_path: Path | None, results: Path, cv_method: str | None, n_splits: int | None):
    """Cross-validate, fit and log the baseline on a built dataset.

    Purged K-fold (or CPCV) with an embargo on the training rows, beside trivial baselines on the same
    folds; then a final fit and a hold-out evaluation. Everything goes to one MLflow run, and the model is
    registered (alias `champion`). Label, weight and split settings come from the dataset itself.
    """
    from training import settings
    from training.config import load_config
    from training.dataset import artifact
    from training.model.tracking import log_run
    from training.model.trainer import train as run_training

    settings.check_mlflow()  # fail in seconds, not after the training
    dataset = artifact.load(dataset_path)
    config = load_config(config_path, {"cv": {"method": cv_method, "n_splits": n_splits}})
    # What the rows were built with is not the trainer's to change: take it from the dataset.
    for section in ("data", "features", "labels", "target", "weights", "split"):
        config[section] = dataset.metadata["config"][section]
    report = run_training(dataset, config, progress=lambda message: click.echo(f"  {message}", err=True))
    logged = log_run(report, dataset, dataset_path, config)
    summary = {
        "run_id": logged.run_id,
        "experiment_id": logged.experiment_id,
        "tracking_uri": logged.tracking_uri if "@" not in logged.tracking_uri else "(redacted)",
        "model_uri": logged.model_uri,
        "registered_model": logged.registered_model,
        "model_version": logged.version,
        "dataset_fingerprint": dataset.metadata["fingerprint"],
        "cv": report.cv_summary,
        "holdout": {k: v for k, v in report.holdout.items()},
        "baselines": {"cv": report.baseline_summary, "holdout": report.holdout_baselines},
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    cv, holdout = report.cv_summary, report.holdout
    majority = report.holdout_baselines["majority"]
    hold = report.holdout_baselines["buy_and_hold"]
    click.echo(
        f"run {logged.run_id} ({logged.model_uri}):\n"
        f"  CV      AUC {cv['roc_auc_mean']:.3f} ± {cv['roc_auc_std']:.3f}, accuracy {cv['accuracy_mean']:.3f}, "
        f"Sharpe {cv['backtest_sharpe_mean']:.2f}\n"
        f"  holdout AUC {holdout['roc_auc']:.3f}, accuracy {holdout['accuracy']:.3f} "
        f"(majority {majority['accuracy']:.3f}), Sharpe {holdout['backtest_sharpe']:.2f} "
        f"(buy and hold {hold['backtest_sharpe']:.2f}), IC {holdout['information_coefficient']:.3f}\n"
        f"  results: {results}"
    )
