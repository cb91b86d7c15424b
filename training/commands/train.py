"""``train``: purged CV of the LightGBM baseline, final fit, hold-out evaluation, one MLflow run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from training.config import Config
    from training.model.trials import Trial


@click.command()
@click.option("--dataset", "dataset_path", type=click.Path(path_type=Path), default=Path("artifacts/dataset"),
              show_default=True, help="Folder written by build-dataset.")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML overriding the defaults.")
@click.option("--results", type=click.Path(path_type=Path), default=Path("artifacts/train_results.json"),
              show_default=True, help="Where to write the results JSON (carries the MLflow run id).")  # fmt: skip
@click.option("--cv", "cv_method", type=click.Choice(["purged_kfold", "cpcv"]), help="Validation method.")
@click.option("--n-splits", type=int, help="Folds (purged_kfold) or groups (cpcv).")
@click.option("--skip-audit", is_flag=True,
              help="Train although the dataset's fingerprint or leakage report does not vouch for it (experiments "
                   "only: tagged skip_audit=true and never promoted).")  # fmt: skip
@click.option("--trials", type=click.IntRange(min=1),
              help="Trials behind this result, for the Deflated Sharpe Ratio, when more were run than the trial "
                   "registry counted (elsewhere): raises N, never lowers it (a lower value is overridden by the "
                   "registry's count, and the summary says so).")  # fmt: skip
@click.option("--importance", "with_importance", is_flag=True,
              help="Also compute MDI, MDA, SFI and clustered MDA under the same purged CV (as the importance "
                   "command; refits every fold per feature, so off by default).")  # fmt: skip
@click.option(
    "--promote",
    is_flag=True,
    help="Make this run champion even if it does not beat the current one (never with --skip-audit).",
)
def train(dataset_path: Path, config_path: Path | None, results: Path, cv_method: str | None, n_splits: int | None,
          skip_audit: bool, trials: int | None, promote: bool, with_importance: bool):  # fmt: skip
    """Cross-validate, fit and log the baseline on a built and audited dataset.

    Refuses a dataset whose rows no longer hash to its fingerprint, or whose leakage_report.json (written
    by verify-leakage) is missing, failed, or audited other rows or other folds. Purged K-fold (or CPCV)
    with an embargo on the training rows, beside trivial baselines on the same folds; then a final fit and
    a hold-out evaluation. Everything goes to one MLflow run; the model is registered as a new version once
    the run has passed its audit (a failed or refused run registers none).
    It becomes `champion` (what predict serves) only when there is none yet, when it beats the champion's
    hold-out mlflow.promote_metric by more than mlflow.promote_min_improvement, or with --promote. Label,
    weight and split settings come from the dataset itself.

    Beside the Sharpe ratios it reports whether they could be luck: the Probabilistic and Deflated Sharpe
    Ratio of the hold-out and of every CV path, the minimum track record length, and the Probability of
    Backtest Overfitting (CSCV over the configurations tried, from 8 of them). N, the trials behind DSR, is
    counted by the trial registry in the MLflow backend: every attempt of the family (the symbols and the
    kind of target), failed ones too, recorded before training starts; an identical re-run adds none.
    """
    from training.config import load_config
    from training.dataset import artifact
    from training.errors import InputError
    from training.infra import settings
    from training.infra.memory import return_freed_memory
    from training.infra.stage_times import stage
    from training.model import promotion
    from training.model.trials import attempt
    from training.output_paths import unwritable_file

    return_freed_memory()  # each fold's arrays are freed back to the OS, not kept for the next fold
    if skip_audit and promote:
        raise InputError("--promote and --skip-audit exclude each other: a run that skips the audit is never promoted")
    unwritable = unwritable_file(results)
    if unwritable:  # found now, not after the training has registered a model version
        raise InputError(f"--results {results} cannot be written: {unwritable}")
    with stage("MLflow check"):
        settings.check_mlflow()  # fail in seconds, not after the training
    dataset = artifact.load(dataset_path)
    config = load_config(config_path, {"cv": {"method": cv_method, "n_splits": n_splits}})
    config = with_dataset_sections(config, config_path, dataset.metadata["config"])
    with stage("dataset audit"):
        audit = promotion.audit(dataset, dataset_path, config, skip=skip_audit)
    if not audit.passed:
        click.echo(f"  --skip-audit: training anyway, never promoted ({'; '.join(audit.findings)})", err=True)
    with attempt(config, dataset.metadata, trials) as trial:  # counted from here, whether it succeeds or not
        run_id = _train_and_log(dataset, dataset_path, config, audit, promote, results, trial)
    if with_importance:
        from training.commands.importance import log_importance
        from training.model.feature_importance import METHODS

        log_importance(run_id, dataset_path, METHODS)


def with_dataset_sections(config: Config, config_path: Path | None, built: dict[str, Any]) -> Config:
    """What the rows were built with is not the trainer's to change: take it from the dataset."""
    from training.config import DATASET_SECTIONS, refuse_contradicting_dataset

    refuse_contradicting_dataset(config_path, built)  # else the run would record a file it ignored
    return config.with_sections({section: built[section] for section in DATASET_SECTIONS})


def _train_and_log(
    dataset, dataset_path: Path, config: Config, audit, promote: bool, results: Path, trial: Trial
) -> str:
    from mlflow.tracking import MlflowClient

    from training.infra.stage_times import stage
    from training.model import promotion
    from training.model.tracking import apply_promotion, log_run, register_model
    from training.model.trainer import train as run_training

    report = run_training(dataset, config, progress=lambda message: click.echo(f"  {message}", err=True))
    with stage("log (MLflow)"):
        logged = log_run(report, dataset, dataset_path, config, audit, trial)
    with stage("run audit"):
        _audit_run(logged, report, dataset, dataset_path, config)
    decision = promotion.decide(
        MlflowClient(), config, report.holdout, audit, forced=promote, fingerprint=dataset.metadata["fingerprint"]
    )
    logged = register_model(logged, audit)  # only now: a run that failed or was refused leaves no model version
    apply_promotion(logged, decision)
    summary = {
        "run_id": logged.run_id,
        "experiment_id": logged.experiment_id,
        "tracking_uri": logged.tracking_uri if "@" not in logged.tracking_uri else "(redacted)",
        "model_uri": logged.model_uri,
        "registered_model": logged.registered_model,
        "model_version": logged.version,
        "dataset_fingerprint": dataset.metadata["fingerprint"],
        "audit": audit.to_json(),
        "promotion": decision.to_json(),
        "cv": report.cv_summary,
        "holdout": {k: v for k, v in report.holdout.items()},
        "baselines": {"cv": report.baseline_summary, "holdout": report.holdout_baselines},
        "validity": logged.validity.to_json(),
        "cross_section": {name: section.metrics() for name, section in report.cross_sections.items()},
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(json_finite(summary), indent=2, default=float) + "\n")
    cv, holdout = report.cv_summary, report.holdout
    majority = report.holdout_baselines["majority"]
    hold = report.holdout_baselines["buy_and_hold"]
    verdict = "champion" if decision.promoted else "not promoted"
    click.echo(
        f"run {logged.run_id} ({logged.model_uri}):\n"
        f"  CV      AUC {cv['roc_auc_mean']:.3f} ± {cv['roc_auc_std']:.3f}, accuracy {cv['accuracy_mean']:.3f}, "
        f"Sharpe {cv['backtest_sharpe_mean']:.2f}\n"
        f"  holdout AUC {holdout['roc_auc']:.3f}, accuracy {holdout['accuracy']:.3f} "
        f"(majority {majority['accuracy']:.3f}), Sharpe {holdout['backtest_sharpe']:.2f} "
        f"(buy and hold {hold['backtest_sharpe']:.2f}), IC {holdout['information_coefficient']:.3f}\n"
        f"{_cross_section_line(report)}\n"
        f"{logged.validity.summary()}\n"
        f"  {verdict}: {decision.reason}\n"
        f"  results: {results}"
    )
    return logged.run_id


def _cross_section_line(report) -> str:
    """Rank IC, ICIR and the top-k long-short Sharpe of CV and hold-out, on one line."""
    parts = []
    for name, section in report.cross_sections.items():
        m = section.metrics()
        parts.append(f"{name} Rank IC {m['rank_ic_mean']:.3f} (ICIR {m['rank_icir']:.2f}), top-{section.top_k} "
                     f"long-short Sharpe {m['topk_sharpe']:.2f}, turnover {m['topk_turnover']:.2f}")  # fmt: skip
    return "  across symbols: " + "; ".join(parts)


def _audit_run(logged, report, dataset, dataset_path: Path, config: Config) -> None:
    """The run's own folds (purge and embargo as fitted) and fitted preprocessing, every fold, audited as
    ``verify-leakage --run`` audits them, before anything may promote it: a failed audit leaves the run
    tagged not promoted (champion does not move) and exits 1 naming the check."""
    from training.commands.verify_leakage import audit_run
    from training.errors import CheckFailed
    from training.model.promotion import Promotion
    from training.model.tracking import apply_promotion

    record = {**report.splits_record(dataset.metadata["fingerprint"], config.cv), "run_id": logged.run_id}
    audited = audit_run(dataset, dataset_path, record)
    if audited.failed:
        reason = f"run audit failed: {', '.join(audited.failed)}"
        apply_promotion(logged, Promotion(False, reason, config.mlflow.promote_metric, None))
        first = audited.check(audited.failed[0]).message.split("; ")[0]
        raise CheckFailed(f"{reason} ({first}); run {logged.run_id} is not promoted")


def json_finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such a statistic (PBO of one path, MinTRL of a losing strategy) is null."""
    if isinstance(value, dict):
        return {k: json_finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
