"""``verify-leakage``: recompute every no-look-ahead invariant of a built dataset; exit 1 when one fails."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import click


@click.command("verify-leakage")
@click.option("--dataset", "dataset_path", type=click.Path(path_type=Path), default=Path("artifacts/dataset"),
              show_default=True, help="Folder written by build-dataset.")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="YAML the training run will use (its cv section is audited).")  # fmt: skip
@click.option("--skip-rebuild", is_flag=True, help="Do not rebuild the dataset through Feast to compare fingerprints.")
@click.option("--cv", "cv_method", type=click.Choice(["purged_kfold", "cpcv"]),
              help="Validation method to audit, as `train --cv` (train refuses folds not audited).")  # fmt: skip
@click.option("--n-splits", type=int, help="Folds (purged_kfold) or groups (cpcv), as `train --n-splits`.")
@click.option("--run", "run",
              help="Audit what a training run used: its MLflow run id, or the results JSON `train` wrote. The folds "
                   "it recorded (method, n_splits, embargo, CLI overrides included) and the preprocessing fitted "
                   "in each are audited; the report goes to DATASET/leakage_report_run_<id>.json and to the "
                   "run.")  # fmt: skip
def verify_leakage(
    dataset_path: Path, config_path: Path | None, skip_rebuild: bool, cv_method: str | None,
    n_splits: int | None, run: str | None,
) -> None:  # fmt: skip
    """Prove the training set and its validation saw no future data.

    Recomputes from the offline store, read by the audit's own query, with the audit's own references
    (sharing no code with the builder, its bar reader, labeller, splitters or indicator engine): every
    feature of every row (TA-Lib on OHLCV up to the joined bar), the point-in-time join, every label, the
    hold-out purge and embargo, every cross-validation fold, the warm-up, and a rebuild's fingerprint; with
    --run, the folds and fitted preprocessing of that training run (train audits its own run that way
    before promoting it). Prints one line per check, writes DATASET/leakage_report.json and exits 1 naming
    the failed checks. `train` trains only on a dataset whose report passed for its fingerprint and for the
    folds the run will use.
    """
    from training.config import load_config, refuse_contradicting_dataset
    from training.dataset import artifact
    from training.errors import CheckFailed, InputError
    from training.infra.memory import return_freed_memory
    from training.leakage.audit import audit_config, run_audit
    from training.leakage.audited_code import rebuild
    from training.leakage.bars import bar_reader
    from training.leakage.panel import BarHistory
    from training.leakage.report import format_text, write_json

    def progress(message: str) -> None:
        click.echo(f"  {message}", err=True)

    return_freed_memory()  # the checks' all-row arrays go back to the OS before the rebuild, not kept as heap
    started = time.perf_counter()
    dataset = artifact.load(dataset_path)
    refuse_contradicting_dataset(config_path, dataset.metadata["config"])  # audit_config takes the dataset's
    config = audit_config(dataset, config_path)
    if cv_method or n_splits is not None:
        if run:
            raise InputError("--run audits the folds the run used: --cv and --n-splits do not apply")
        cv = load_config(config_path, {"cv": {"method": cv_method, "n_splits": n_splits}}).cv
        config = config.model_copy(update={"cv": cv})
    record = _run_record(run) if run else None
    with (
        bar_reader(dataset.metadata["symbols"], dataset.metadata.get("known_at")) as read_bars,
        tempfile.TemporaryDirectory(prefix=".rebuild-", dir=Path(dataset_path).resolve().parent) as scratch,
    ):
        loaded = time.perf_counter()
        progress(f"auditing {dataset.n_rows:,} rows of {len(dataset.metadata['symbols'])} symbol(s) in "
                 f"{len(dataset.metadata['parts'])} part(s), reading each part's bars from the offline "
                 "store by the audit's own query")  # fmt: skip
        report = run_audit(
            dataset,
            config,
            lambda symbols: BarHistory.of(read_bars(symbols)),
            rebuild=None
            if skip_rebuild
            else lambda: rebuild(dataset.metadata, Path(scratch) / "dataset", lambda m: progress(f"  {m}")),
            record=record,
            path=dataset_path,
            progress=progress,
        )
    report.timings = {
        "load_dataset": loaded - started,
        **report.timings,
        "total": time.perf_counter() - started,
    }
    if record is None:
        written = write_json(report, dataset_path)
    else:
        written = write_json(report, dataset_path, f"leakage_report_run_{record['run_id']}.json")
        _log_to_run(record["run_id"], written, report.status)
    click.echo(format_text(report))
    click.echo(f"report: {written}")
    if report.failed:
        raise CheckFailed(f"leakage check(s) failed: {', '.join(report.failed)} (details in {written})")


def _run_record(run: str) -> dict[str, Any]:
    """The folds and fitted preprocessing a training run logged (``cv_splits.json``), with its run id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from training.errors import InputError
    from training.infra import settings

    path = Path(run)
    if path.suffix == ".json" and path.exists():
        run = str(json.loads(path.read_text()).get("run_id"))
    mlflow.set_tracking_uri(settings.check_mlflow())
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run, artifact_path="cv_splits.json")
    except MlflowException as error:
        raise InputError(f"run {run} has no cv_splits.json in MLflow ({error.error_code}): train it again") from None
    return {**json.loads(Path(local).read_text()), "run_id": run}


def _log_to_run(run_id: str, report: Path, status: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    client.log_artifact(run_id, str(report))
    client.set_tag(run_id, "leakage_check_run", status)


def audit_run(dataset, dataset_path: Path, record: dict[str, Any]) -> Any:
    """The run checks (its recorded folds and fitted preprocessing, every fold) on a run ``train`` just logged:
    the report goes to DATASET/leakage_report_run_<id>.json and to the run (tag ``leakage_check_run``), and its
    text to the terminal. Returns the :class:`~training.leakage.audit.AuditReport`; ``train`` promotes nothing
    it failed."""
    from training.leakage.audit import audit_training_run
    from training.leakage.report import format_text, write_json

    report = audit_training_run(dataset, record, dataset_path, lambda message: click.echo(f"  {message}", err=True))
    written = write_json(report, dataset_path, f"leakage_report_run_{record['run_id']}.json")
    _log_to_run(record["run_id"], written, report.status)
    click.echo(format_text(report, f"run audit of {record['run_id']}:"))
    return report
