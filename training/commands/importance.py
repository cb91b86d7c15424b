"""``importance``: MDI, MDA, SFI and clustered MDA of a training run's features under its own purged CV."""

from __future__ import annotations

from pathlib import Path

import click

from training.model.feature_importance import METHODS

ARTIFACT_FOLDER = "importance"


@click.command()
@click.option("--run", "run_id", required=True, help="MLflow run id of a train run (or its results JSON).")
@click.option("--dataset", "dataset_path", type=click.Path(path_type=Path),
              help="The run's dataset folder, if it moved since the run (its fingerprint must match).")  # fmt: skip
@click.option("--method", "methods", type=click.Choice(METHODS), multiple=True,
              help="Only these methods (repeatable); default all four.")  # fmt: skip
def importance(run_id: str, dataset_path: Path | None, methods: tuple[str, ...]):
    """Feature importance under the run's purged CV, logged to the run under importance/.

    Reads the run's configuration and dataset (checked against the run's dataset fingerprint) and refits the
    baseline on every purged fold of the training rows: MDI (each fold model's gain share), MDA (log-loss
    rise when a feature is permuted on the test fold), SFI (each feature alone) and clustered MDA (clusters
    of correlated features permuted together). Each is reported as mean and standard deviation over the
    folds, with a value per fold, as CSV, JSON and a plot. The hold-out rows are never read.
    """
    log_importance(run_id, dataset_path, methods or METHODS)


def log_importance(run_id: str, dataset_path: Path | None, methods: tuple[str, ...]) -> None:
    """Compute the importance of a logged run and add it to the run's artifacts (``train --importance`` too)."""
    import math
    import sys
    import tempfile

    import mlflow

    from training.commands.logged_run import load_logged_run
    from training.config import load_config
    from training.model import feature_importance as methods_of

    logged = load_logged_run(run_id, dataset_path)
    run_id, dataset = logged.run_id, logged.dataset
    client = mlflow.MlflowClient()
    config = load_config(logged.config_file)
    folds = math.comb(config.cv.n_groups, config.cv.test_groups) if config.cv.method == "cpcv" else config.cv.n_folds
    with click.progressbar(length=folds, label="importance (folds)", file=sys.stderr) as bar:
        result = methods_of.of_dataset(dataset, config, methods, progress=lambda _: bar.update(1))
    with tempfile.TemporaryDirectory() as folder:
        methods_of.write(result, folder)
        client.log_artifacts(run_id, folder, ARTIFACT_FOLDER)
    for method in result.frames:
        ranked = result.frames[method].sort_values("mean", ascending=False)
        top = ", ".join(f"{name} {row['mean']:.3g}±{row['std']:.2g}" for name, row in ranked.head(3).iterrows())
        click.echo(f"  {method:<14} {top}")
    click.echo(f"run {run_id}: importance logged under {ARTIFACT_FOLDER}/")
