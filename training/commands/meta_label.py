"""``meta-label``: a primary side, a secondary LightGBM deciding whether to act on it, sized bets; one MLflow run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click


@click.command("meta-label")
@click.option("--dataset", "dataset_path", type=click.Path(path_type=Path),
              help="Folder written by build-dataset (audited by verify-leakage); default artifacts/dataset, or with a "
                   "run as --primary the run's own dataset.")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="YAML overriding the defaults (with a run as --primary: meta_labeling only).")  # fmt: skip
@click.option("--primary",
              help="Where the side comes from: crossover, model (the baseline's configuration), or a train run (its id "
                   "or results JSON, e.g. tune's winner_results.json) whose configuration is the primary "
                   "(default: meta_labeling.primary of the configuration).")  # fmt: skip
@click.option("--results", type=click.Path(path_type=Path), default=Path("artifacts/meta_label_results.json"),
              show_default=True, help="Where to write the results JSON (carries the MLflow run id).")  # fmt: skip
@click.option("--skip-audit", is_flag=True, help="Run although the dataset's leakage report does not vouch for it.")
def meta_label(dataset_path: Path | None, config_path: Path | None, primary: str | None, results: Path,
               skip_audit: bool):  # fmt: skip
    """Meta-label the primary's sides and size the bets (AFML 3.6 and 10), under train's purged CV.

    The primary gives each decision a side: the moving-average crossover named by meta_labeling.fast and
    .slow, or the sign of the baseline's out-of-sample P(+1) (nested: a fold's sides never come from a model
    that saw the fold), the baseline being the configuration's or, with a run as --primary, that run's (its
    model parameters, feature families and dataset: tune's winner). The meta-label is 1 when that side earned
    a positive return to the first barrier (only the label window (t, t1] is read). A secondary LightGBM on
    the features plus the side learns it; its probability p becomes a size 2 Phi(z) - 1, z = (p - 1/2) /
    sqrt(p (1 - p)), averaged over a symbol's open bets and rounded to meta_labeling.step. Reports
    precision, recall and F1 of the meta model and the Sharpe ratios of the unsized primary, of the bets the
    meta model keeps and of the sized bets, out of sample over purged K-fold (a CPCV configuration: K = its
    groups) and once on the hold-out. A command of its own (not a train option): it fits another model on
    top of a primary, and train's run, champion and serving stay the baseline's.
    """
    from training.commands.train import json_finite, with_dataset_sections
    from training.dataset import artifact
    from training.infra import settings
    from training.model import promotion
    from training.model.meta_labeling import cv_of_meta_labeling
    from training.model.meta_labeling import meta_label as run_meta_label
    from training.model.overfitting import deflate, describe_pbo
    from training.model.trials import attempt

    uri = settings.check_mlflow()  # fail in seconds, not after the fits
    if primary in (None, "crossover", "model"):
        primary_run = None
        dataset_path = dataset_path or DEFAULT_DATASET
        dataset = artifact.load(dataset_path)
        config = _config(config_path, {"primary": primary}, None)
    else:
        from training.commands.logged_run import load_logged_run

        primary_run = load_logged_run(primary, dataset_path)
        dataset, dataset_path = primary_run.dataset, primary_run.dataset_path
        config = _config(config_path, {"primary": "model"}, primary_run.config_file)
    config = with_dataset_sections(config, None if primary_run else config_path, dataset.metadata["config"])
    audit = promotion.audit(dataset, dataset_path, config, skip=skip_audit)  # the folds its report audited
    config = cv_of_meta_labeling(config)  # one out-of-sample path: purged K-fold over the same groups
    kind = f"meta_label:{config.meta_labeling.primary}"  # a family of its own: the baseline's N stays its own
    with attempt(config, dataset.metadata, kind=kind, counted=("meta_labeling",)) as trial:  # counted from here
        result = run_meta_label(dataset, config, progress=lambda message: click.echo(f"  {message}", err=True))
        validity = deflate({"cv": result.cv.daily["sized"], "holdout": result.holdout.daily["sized"]}, trial)
        run_id = _log(result, dataset, config, audit, trial, validity, primary_run and primary_run.run_id)
    summary = {
        "run_id": run_id,
        "tracking_uri": uri if "@" not in uri else "(redacted)",
        "dataset_fingerprint": dataset.metadata["fingerprint"],
        "primary": result.primary,
        "primary_run": primary_run and primary_run.run_id,
        "cv": result.cv.metrics,
        "holdout": result.holdout.metrics,
        "folds": result.folds,
        "validity": validity,
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(json_finite(summary), indent=2) + "\n")
    for name, scores in (("CV     ", result.cv.metrics), ("holdout", result.holdout.metrics)):
        click.echo(
            f"  {name} precision {scores['precision']:.3f} (primary alone {scores['primary_precision']:.3f}), "
            f"recall {scores['recall']:.3f}, F1 {scores['f1']:.3f}; Sharpe primary {scores['primary_sharpe']:.2f}, "
            f"kept {scores['filtered_sharpe']:.2f}, sized {scores['sized_sharpe']:.2f} "
            f"(a position on {scores['sized_share']:.1%} of rows, mean |size| {scores['mean_abs_size']:.3f})"
        )
    cv, held = validity["cv"], validity["holdout"]
    click.echo(
        f"  sized bets, N = {validity['trials']} trial(s) ({validity['trials_source']}): "
        f"CV {_deflated(cv)}; hold-out {_deflated(held)}; PBO {describe_pbo(validity['pbo'])}"
    )
    source = f"run {primary_run.run_id}'s model" if primary_run else result.primary
    click.echo(f"run {run_id}: meta-labeling ({source} primary)\n  results: {results}")


DEFAULT_DATASET = Path("artifacts/dataset")


def _config(config_path: Path | None, meta: dict[str, str | None], run_config: Path | None):
    """The defaults and --config; with a primary run, the run's configuration and --config's meta_labeling."""
    import yaml

    from training.config import load_config
    from training.errors import InputError

    if run_config is None:
        return load_config(config_path, {"meta_labeling": meta})
    given = (yaml.safe_load(config_path.read_text()) or {}) if config_path else {}
    if not isinstance(given, dict) or set(given) - {"meta_labeling"}:
        raise InputError(f"{config_path}: with a run as --primary the run's configuration is the primary's; "
                         "--config may set meta_labeling only")  # fmt: skip
    return load_config(run_config, {"meta_labeling": {**(given.get("meta_labeling") or {}), **meta}})


def _deflated(stats: dict[str, float]) -> str:
    """PSR and DSR, or why there are none (sized bets that never held a position have no Sharpe ratio)."""
    if not math.isfinite(stats["psr"]):
        return "PSR n/a (no sized position)"
    return f"PSR {stats['psr']:.3f}, DSR {stats['dsr']:.3f}"


def _log(result, dataset, config, audit, trial, validity, primary_run: str | None) -> str:
    """One MLflow run in the training experiment: parameters, metrics per fold and overall, the sized bets'
    PSR, DSR and PBO, artifacts; linked to its trial record (its CV sized returns are what PBO compares)."""
    import tempfile
    from datetime import UTC, datetime

    import mlflow
    import yaml

    from training.commands.train import json_finite
    from training.infra import settings
    from training.model import plots
    from training.model.overfitting import PATH_RETURNS
    from training.model.tracking import audit_tags, experiment_id_of, git_commit, scalar_metrics, validation_method

    mlflow.set_tracking_uri(settings.check_mlflow())
    commit, dirty = git_commit()
    tags = {"kind": "meta_label", "primary": result.primary, "dataset_fingerprint": dataset.metadata["fingerprint"],
            "validation_method": validation_method(config), "git_commit": commit, "git_dirty": str(dirty).lower(),
            "trials": str(validity["trials"]), **audit_tags(audit), **trial.tags(),
            **({"primary_run": primary_run} if primary_run else {})}  # fmt: skip
    name = f"meta-label-{result.primary}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    experiment = experiment_id_of(mlflow, config.mlflow.experiment)
    with mlflow.start_run(experiment_id=experiment, run_name=name, tags=tags) as run:
        mlflow.log_params({f"meta_labeling.{k}": v for k, v in config.meta_labeling.model_dump().items()})
        for fold in result.folds:
            scores = {k: v for k, v in fold.items() if k != "fold"}
            mlflow.log_metrics(scalar_metrics("cv", scores), step=fold["fold"])
        mlflow.log_metrics(scalar_metrics("cv", result.cv.metrics) | scalar_metrics("holdout", result.holdout.metrics))
        mlflow.log_metrics(_validity_metrics(validity))
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder)
            scores = {"primary": result.primary, "cv": result.cv.metrics, "holdout": result.holdout.metrics,
                      "folds": result.folds}  # fmt: skip
            (out / "meta_label.json").write_text(json.dumps(scores, indent=2, default=float) + "\n")
            result.cv.daily.to_csv(out / "cv_daily_returns.csv")
            result.holdout.daily.to_csv(out / "holdout_daily_returns.csv")
            (out / "config.yaml").write_text(yaml.safe_dump(config.dump(), sort_keys=False))
            (out / "validity").mkdir()
            (out / "validity" / "validity.json").write_text(json.dumps(json_finite(validity), indent=2) + "\n")
            result.cv.daily[["sized"]].to_csv(out / PATH_RETURNS)
            plots.meta_equity({"purged CV (out of sample)": result.cv.daily, "hold-out": result.holdout.daily},
                              out / "meta_label_equity.png")  # fmt: skip
            mlflow.log_artifacts(folder)
        trial.attach(run.info.run_id)
        return run.info.run_id


def _validity_metrics(validity: dict) -> dict[str, float]:
    """validity/trials, validity/pbo and validity/{cv,holdout}_sized_<statistic>, the finite ones."""
    import math

    flat = {"trials": validity["trials"], "pbo": validity["pbo"]["pbo"]}
    for part in ("cv", "holdout"):
        flat |= {f"{part}_sized_{k}": v for k, v in validity[part].items()}
    return {f"validity/{k}": float(v) for k, v in flat.items() if math.isfinite(float(v))}
