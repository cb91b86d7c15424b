"""``tune``: search the configured space with Optuna under CPCV, every trial counted; the winner trained once."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

DEFAULT_WORK = Path("artifacts/tune")


@click.command()
@click.option("--dataset", "dataset_path", type=click.Path(path_type=Path), default=Path("artifacts/dataset"),
              show_default=True, help="Dataset (build-dataset) whose rows are searched.")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="YAML overriding the defaults; its tune section declares the search space.")  # fmt: skip
@click.option("--trials", type=click.IntRange(min=1), help="Trials to run (tune.trials).")
@click.option("--n-jobs", type=click.IntRange(min=1), help="Trials at once (tune.n_jobs).")
@click.option("--work", type=click.Path(path_type=Path), default=DEFAULT_WORK, show_default=True,
              help="Datasets of other label settings (reused by reruns), winner's files.")  # fmt: skip
@click.option("--importance", "with_importance", is_flag=True,
              help="Also compute MDI, MDA, SFI and clustered MDA of the winner (train --importance: logged under "
                   "its run, on its training rows).")  # fmt: skip
def tune(dataset_path: Path, config_path: Path | None, trials: int | None, n_jobs: int | None, work: Path,
         with_importance: bool) -> None:  # fmt: skip
    """Search model parameters, label horizon and barriers, and feature families under CPCV.

    Each trial (drawn by a seeded TPE sampler: a rerun draws the same configurations with --n-jobs 1) is
    cross-validated by combinatorial purged CV on the training rows alone, on the dataset built with its label
    settings (built once per label setting under WORK by the same builder as build-dataset). Every trial is
    a nested MLflow run under one parent run and an attempt in the trial registry, so train's N counts it. The
    hold-out is not read until the end: the best trial's configuration is then audited (verify-leakage) and
    trained by `train` (refit on all training rows, scored once on the hold-out, registered and, if it beats the
    champion, promoted), its Deflated Sharpe Ratio deflated by every trial of the family and its PBO computed
    by CSCV over the trials' out-of-sample path returns. WORK/winner.yaml reproduces the winner with `train`.
    """
    import mlflow
    import optuna
    from mlflow.tracking import MlflowClient
    from tqdm import tqdm

    from training.commands.build_dataset import build_from_config
    from training.commands.train import with_dataset_sections
    from training.config import load_config
    from training.dataset import artifact
    from training.errors import InputError
    from training.infra import settings
    from training.infra.memory import return_freed_memory
    from training.model.tracking import experiment_id_of
    from training.model.tuning import LabelledDatasets, Search, check_space, direction
    from training.output_paths import uncreatable
    from training.search_space import parse_space

    return_freed_memory()
    problem = f"{work} is a file, not a folder" if work.is_file() else uncreatable(work / "winner.yaml")
    if problem:  # found now, not after the search
        raise InputError(f"--work {work} cannot be written: {problem}")
    uri = settings.check_mlflow()  # fail in seconds, not after the search
    dataset = artifact.load(dataset_path)
    config = load_config(config_path, {"tune": {"trials": trials, "n_jobs": n_jobs}})
    config = with_dataset_sections(config, config_path, dataset.metadata["config"])
    config = config.with_sections({"cv": {"method": "cpcv"}})  # each trial's paths: what PBO and DSR need
    dimensions = parse_space(config.tune.space)
    check_space(config, dimensions)
    work.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment_id = experiment_id_of(mlflow, config.mlflow.experiment)
    tags = {"tune": "parent", "dataset_fingerprint": dataset.metadata["fingerprint"]}
    parent = client.create_run(experiment_id, run_name=f"tune-{time.strftime('%Y%m%dT%H%M%S')}", tags=tags)
    parent_id = parent.info.run_id
    known_at = _known_at(dataset.metadata)  # every label setting sees the bars the given dataset saw
    datasets = LabelledDatasets(dataset, dataset_path, work / "datasets",
                                lambda c, out: build_from_config(c, out, known_at))  # fmt: skip
    search = Search(config, dimensions, datasets, client, experiment_id, parent_id)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction(config.tune.objective),
                                sampler=optuna.samplers.TPESampler(seed=config.tune.seed))  # fmt: skip
    try:
        client.log_param(parent_id, "tune.space", json.dumps(config.tune.space)[:6000])
        with tqdm(total=config.tune.trials, desc="tune", unit="trial") as bar:

            def advance(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
                if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
                    bar.set_postfix({f"best {config.tune.objective}": f"{study.best_value:.3f}"}, refresh=False)
                bar.update(1)

            study.optimize(search.run_trial, n_trials=config.tune.trials, n_jobs=config.tune.n_jobs,
                           callbacks=[advance], catch=(InputError,))  # fmt: skip
        if not search.results:
            raise InputError("no trial finished: every configuration was refused (see the trial runs' failure tags)")
        winner = next(r for r in search.results if r.number == study.best_trial.number)
        summary = _train_winner(winner, work, with_importance)
        _log_parent(client, parent_id, search, winner, summary)
    except BaseException:
        client.set_terminated(parent_id, "FAILED")
        raise
    client.set_terminated(parent_id, "FINISHED")
    out = {"parent_run_id": parent_id, "trials": len(search.results), "winner": {
        "trial": winner.number, "values": winner.values, "objective": winner.objective, "trial_run_id": winner.run_id,
        "dataset": str(winner.dataset_path), "config": str(work / "winner.yaml")}, "train": summary}  # fmt: skip
    (work / "tune_results.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    validity = summary["validity"]
    click.echo(
        f"tune {parent_id}: {len(search.results)} trial(s), best {config.tune.objective} {winner.objective:.3f} "
        f"(trial {winner.number}: {winner.values})\n"
        f"  winner run {summary['run_id']}: hold-out PSR {validity['holdout']['psr']:.3f}, "
        f"DSR {validity['holdout']['dsr']:.3f} over N = {validity['trials']}, PBO {_pbo(validity['pbo'])}\n"
        f"  results: {work / 'tune_results.json'}"
    )


def _known_at(metadata: dict[str, Any]) -> datetime | None:
    """The given dataset's knowledge time (none for a lake build or a dataset from before versions were kept)."""
    recorded = metadata.get("known_at")
    return datetime.fromisoformat(recorded) if recorded else None


def _pbo(pbo: dict[str, Any]) -> str:
    value = pbo.get("pbo")
    return f"{value:.2f} over {pbo['configurations']} configurations" if value is not None else f"n/a ({pbo['reason']})"


def _train_winner(winner: Any, work: Path, with_importance: bool) -> dict[str, Any]:
    """Audit the winner's dataset for its folds, then `train` it: the one read of the hold-out."""
    import yaml

    from training.commands.train import train
    from training.commands.verify_leakage import verify_leakage

    config_file = work / "winner.yaml"
    config_file.write_text(yaml.safe_dump(winner.config.dump(), sort_keys=False))
    results = work / "winner_results.json"
    context = click.get_current_context()
    context.invoke(verify_leakage, dataset_path=winner.dataset_path, config_path=config_file)
    context.invoke(train, dataset_path=winner.dataset_path, config_path=config_file, results=results,
                   with_importance=with_importance)  # fmt: skip
    return json.loads(results.read_text())


def _log_parent(client: Any, parent_id: str, search: Any, winner: Any, summary: dict[str, Any]) -> None:
    """The search's outcome on its parent run: the winner, its hold-out PSR and DSR, N and PBO."""
    validity = summary["validity"]
    holdout = validity["holdout"]
    metrics = {"trials": float(len(search.results)), "winner_objective": winner.objective,
               "validity/trials": validity["trials"], "validity/holdout_psr": holdout["psr"],
               "validity/holdout_dsr": holdout["dsr"], "validity/pbo": validity["pbo"].get("pbo")}  # fmt: skip
    metrics |= {f"winner/cv_{k}": v for k, v in winner.cv_summary.items()}
    metrics |= {f"winner/cross_section_cv_{k}": v for k, v in winner.cross_section.items()}
    for key, value in metrics.items():
        if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
            client.log_metric(parent_id, key, float(value))
    for key, value in (("winner_trial_run", winner.run_id), ("winner_run", summary["run_id"]),
                       ("winner_values", json.dumps(winner.values, default=str)[:5000])):  # fmt: skip
        client.set_tag(parent_id, key, value)
    client.set_tag(summary["run_id"], "tune_parent_run", parent_id)
