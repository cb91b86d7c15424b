"""Log a training run to MLflow: parameters, per-fold and summary metrics, plots, data lineage, the model.

The model is saved in MLflow's skops format (safe to load, unlike pickle), with a signature and an
input example, and registered under ``config.mlflow.registered_model`` as a new version once the run has
succeeded (:func:`register_model`). Whether that version takes the ``champion`` alias (what ``predict``
serves) is decided afterwards by :mod:`training.model.promotion` and applied by :func:`apply_promotion`.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from training.config import Config
from training.contract import CHAMPION_ALIAS
from training.dataset.artifact import METADATA_FILE, REPORT_FILE, Dataset
from training.infra import settings
from training.infra.stage_times import stage
from training.model import cross_section, plots
from training.model.input_distribution import ARTIFACT as INPUT_DISTRIBUTION
from training.model.model_logging import log_skops_model
from training.model.promotion import Audit, Promotion
from training.model.trainer import TrainingReport
from training.model.trials import Trial, config_hash


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    experiment_id: str
    model_uri: str
    registered_model: str
    version: str | None  # None until register_model: a failed or refused run registers none
    tracking_uri: str
    validity: Any = None  # training.model.overfitting.Assessment


def _flatten(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(_flatten(name, value))
        else:
            flat[name] = value if not isinstance(value, list) else json.dumps(value)
    return flat


def scalar_metrics(prefix: str, values: dict[str, Any]) -> dict[str, float]:
    return {
        f"{prefix}/{k}": float(v)
        for k, v in values.items()
        if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
    }


def git_commit() -> tuple[str, bool]:
    """HEAD of the project checkout and whether the working tree differs from it ("unknown" outside git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=settings.PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=settings.PROJECT_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        return head, bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def experiment_id_of(mlflow, name: str) -> str:
    """The id of the named experiment, created with the project's artifact root if new (every command's runs)."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=settings.mlflow_artifact_root())


def validation_method(config: Config) -> str:
    cv, split = config.cv, config.split
    method = f"{cv.method}(n_splits={cv.count}, embargo={cv.embargo}"
    method += f", test_groups={cv.test_groups})" if cv.method == "cpcv" else ")"
    return f"{method} + holdout(train_fraction={split.train_fraction}, embargo={split.embargo})"


def _write_artifacts(folder: Path, report: TrainingReport, dataset_path: Path, config: Config):
    importance = report.feature_importance()
    importance.to_csv(folder / "feature_importance.csv", index=False)
    plots.feature_importance(importance, folder / "feature_importance.png")
    plots.roc(report, folder / "roc.png")
    plots.confusion(report.holdout["confusion_matrix"], report.classes, folder / "confusion_matrix.png",
                    "Hold-out confusion matrix")  # fmt: skip
    plots.equity(report, folder / "equity_curve.png", config.backtest.cost_bps)
    report.holdout_backtest.daily.rename("strategy").to_frame().join(
        report.holdout_buy_and_hold.daily.rename("buy_and_hold")
    ).to_csv(folder / "holdout_daily_returns.csv")
    (folder / "config.yaml").write_text(yaml.safe_dump(config.dump(), sort_keys=False))
    (folder / "dataset_metadata.json").write_text((dataset_path / METADATA_FILE).read_text())
    folds = [
        {"fold": f.index, "train_rows": f.train_rows, "test_rows": f.test_rows, "metrics": f.metrics,
         "baselines": f.baselines}
        for f in report.folds
    ]  # fmt: skip
    (folder / "cv_folds.json").write_text(json.dumps(folds, indent=2, default=float))
    (folder / INPUT_DISTRIBUTION).write_text(json.dumps(report.input_distribution))
    if report.cross_sections:
        cross_section.write_artifacts(report.cross_sections, folder)
    leakage = dataset_path / REPORT_FILE
    if leakage.exists():
        (folder / REPORT_FILE).write_text(leakage.read_text())


def audit_tags(audit: Audit) -> dict[str, str]:
    """How far the dataset was vouched for: a --skip-audit run says so, with what the audit would have said."""
    tags = {"leakage_check": audit.report_status, "skip_audit": str(audit.skipped).lower()}
    if audit.findings:
        tags["audit_findings"] = "; ".join(audit.findings)[:5000]
    if audit.skipped_checks:
        tags["leakage_skipped_checks"] = ",".join(audit.skipped_checks)
    return tags


def log_run(
    report: TrainingReport,
    dataset: Dataset,
    dataset_path: Path,
    config: Config,
    audit: Audit,
    trial: Trial,
) -> LoggedRun:
    """One MLflow run for a training report: parameters, metrics, plots, lineage tags, the logged model.

    The model is logged, not registered: :func:`register_model` makes it a version once the run has passed
    its audit; whether it becomes ``champion`` is decided by :mod:`training.model.promotion`, never here. The
    tags carry what a reader needs to trust (or not) the run: the dataset fingerprint, the audit's verdict,
    the validation method, the git commit, and the trial (family, key and N, the trials counted for DSR) in
    the trial registry.
    """
    import mlflow

    from training.model import overfitting

    uri = settings.check_mlflow()
    mlflow.set_tracking_uri(uri)
    experiment_id = experiment_id_of(mlflow, config.mlflow.experiment)
    meta = dataset.metadata
    with stage("validity (PSR, DSR, PBO)"):
        validity = overfitting.assess(report, trial)
    run_name = config.mlflow.run_name.format(
        feature_service=meta["feature_service"],
        horizon=config.labels.horizon,
        timestamp=datetime.now(UTC).strftime("%Y%m%dT%H%M%S"),
    )
    commit, dirty = git_commit()
    tags = {
        "feature_service": meta["feature_service"],
        "label_config": json.dumps(config.labels.model_dump(), sort_keys=True),
        "validation_method": validation_method(config),
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "dataset_fingerprint": meta["fingerprint"],
        "target": config.target,
        "config_hash": config_hash(config),
        "trials": str(validity.trials),
        **trial.tags(),
        **audit_tags(audit),
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        trial.attach(run.info.run_id)
        params = _flatten("", {k: v for k, v in config.dump().items() if k != "mlflow"})
        params.update({"dataset.rows": meta["rows"], "dataset.features": len(meta["features"]),
                       "dataset.symbols": ",".join(meta["symbols"]), "dataset.path": str(dataset_path)})  # fmt: skip
        mlflow.log_params(params)
        for fold in report.folds:
            for name, value in scalar_metrics("cv", fold.metrics).items():
                mlflow.log_metric(name, value, step=fold.index)
        summary = scalar_metrics("cv", report.cv_summary)
        summary.update(scalar_metrics("holdout", report.holdout))
        for name, values in report.baseline_summary.items():
            summary.update(scalar_metrics(f"baseline_{name}/cv", values))
        for name, values in report.holdout_baselines.items():
            summary.update(scalar_metrics(f"baseline_{name}/holdout", values))
        if report.path_sharpes:
            summary["cpcv/path_sharpe_mean"] = float(np.mean(report.path_sharpes))
            summary["cpcv/path_sharpe_std"] = float(np.std(report.path_sharpes))
        if len(report.classes) == 2:
            (tn, fp), (fn, tp) = report.holdout["confusion_matrix"]
            summary.update({"holdout/tn": tn, "holdout/fp": fp, "holdout/fn": fn, "holdout/tp": tp})
        summary.update(validity.metrics())
        for name, section in report.cross_sections.items():
            summary.update(scalar_metrics(f"cross_section/{name}", section.metrics()))
        mlflow.log_metrics(summary)

        with stage("plots and artifacts"), tempfile.TemporaryDirectory() as folder:
            _write_artifacts(Path(folder), report, dataset_path, config)
            overfitting.write_artifacts(validity, report, Path(folder))
            splits = report.splits_record(meta["fingerprint"], config.cv)
            (Path(folder) / "cv_splits.json").write_text(json.dumps(splits, separators=(",", ":")))
            mlflow.log_artifacts(folder)

        with stage("model (skops)"):
            logged_model = log_skops_model(report.final.pipeline, report.input_example)
    return LoggedRun(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_uri=logged_model.model_uri,  # MLflow's logged model (models:/m-...), registered by register_model
        registered_model=config.mlflow.registered_model,
        version=None,
        tracking_uri=uri,
        validity=validity,
    )


def register_model(logged: LoggedRun, audit: Audit) -> LoggedRun:
    """Register the run's logged model as a new version, once the run has succeeded (trained, logged and passed
    its run audit): a run that failed or was refused leaves no version behind for anyone to serve or promote."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(logged.tracking_uri)
    version = str(mlflow.register_model(logged.model_uri, logged.registered_model).version)
    MlflowClient().set_model_version_tag(logged.registered_model, version, "skip_audit", str(audit.skipped).lower())
    return replace(logged, version=version, model_uri=f"models:/{logged.registered_model}/{version}")


def apply_promotion(logged: LoggedRun, promotion: Promotion) -> None:
    """Record the decision on the run and its model version (if registered); move the alias only when promoted."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    verdict = CHAMPION_ALIAS if promotion.promoted else "not promoted"
    for key, value in (("promotion", verdict), ("promotion_reason", promotion.reason[:5000])):
        client.set_tag(logged.run_id, key, value)
        if logged.version is not None:  # a refused run has no version
            client.set_model_version_tag(logged.registered_model, logged.version, key, value)
    if promotion.promoted:
        client.set_registered_model_alias(logged.registered_model, CHAMPION_ALIAS, logged.version)
