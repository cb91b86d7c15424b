"""``update``: the evening loop after the close, in one idempotent command.

Ingest the new bars, compute what became stale, refresh the online store, prove it serves the newest rows,
then score every symbol of the newest session with the champion model into ``predictions.daily_scores``.
Each stage is the standalone command's own code, so ``update`` behaves as running them in turn would.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from training.config import MonitoringConfig
    from training.serving.drift import DriftReport
    from training.serving.update_guard import Ready


@click.command()
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--model", "model_uri", help="Model to score with (default: the registered model's champion).")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="YAML overriding the defaults (its monitoring section: drift_alpha, experiment).")  # fmt: skip
def update(path: Path, model_uri: str | None, config_path: Path | None) -> None:
    """Ingest PATH (a day's bars, or any file `ingest` reads), then bring everything after it up to date.

    First, without writing: the model resolves and loads, MLflow takes writes, Redis and PostgreSQL answer;
    one update runs at a time (a second waits for the first). Then one line per stage: ingest,
    compute-features (incremental), materialize (only rows that changed), check-online (the symbols written,
    and a sample of up to 100 others), then the scores of every symbol whose newest bar is the newest session
    in the offline store, into predictions.daily_scores (each scored row, with its features, into
    serving.prediction_log for `replay`); then every earlier score whose bar's features were
    rewritten after it was scored (a corrected bar) is scored again on its offline features, with the model
    that scored it (the current one when that no longer resolves, replacing its row). Last, drift: each model
    input's median across the scored symbols is placed among the training sessions' medians recorded with the
    model, and logged as an MLflow monitoring run with a plot; a session stays pending in
    predictions.monitoring_runs until its run is logged, so a run cut short is completed by the next. Running
    it twice, or on a file that overlaps earlier ones, changes nothing the second time (the scores table
    included). Exit codes: 0 done; 1 the online store differs from the offline rows; 2 bad input (nothing
    written); 3 a service is unreachable (nothing written when found before the first write); 4 done, but
    inputs drifted from the training sessions (an alert: the scores are written).
    """
    from training.commands.compute_features import report_features
    from training.commands.ingest import describe_load
    from training.config import load_config
    from training.engines import current_engine
    from training.feast_store.repository import feature_store
    from training.ingestion.load import FileReading, load_file
    from training.serving.materialization import materialize_changed
    from training.serving.update_guard import preflight, update_lock

    engine = current_engine()
    engine.require("update")
    monitoring = load_config(config_path).monitoring  # a bad file is refused before anything is written
    with update_lock():
        ready = preflight(model_uri, monitoring)
        click.echo(describe_load(path, load_file(path, FileReading(), engine.ingest).result))
        report_features(engine.features_table(), engine.compute_features(None, None, None, full=False))
        done = materialize_changed()
        click.echo(f"online store: {len(done.symbols)} symbol(s) with a new or changed newest row written")
        store = feature_store()
        _check_parity(store, done.symbols)
        report = _score_session(store, ready, monitoring)
        _rescore_changed(store, ready)
        alerts = _log_pending(monitoring)
    if (report and report.drifted) or alerts:
        click.get_current_context().exit(DRIFT_EXIT_CODE)  # the alert: the scores are written


DRIFT_EXIT_CODE = 4  # done, but the inputs drifted from the training rows (in the docstring's exit codes)
PARITY_SAMPLE = 100  # untouched symbols whose online row is compared with the offline one at each update


def _check_parity(store, changed: list[str]) -> None:
    """check-online of the symbols just written, and of a sample of the others (an online store can lose or
    garble rows nobody wrote today: an eviction, a flush, a second writer)."""
    import random

    from training.commands.check_online import mismatch_error
    from training.serving.online_store import check_online, offline_symbols

    others = sorted(set(offline_symbols()) - set(changed))
    sample = random.Random(len(others)).sample(others, min(PARITY_SAMPLE, len(others)))
    checks = check_online(store, [*changed, *sample])
    failed = [c for c in checks if not c.ok]
    if failed:
        raise mismatch_error(failed)
    click.echo(
        f"check-online: the online store serves the newest offline row of the {len(changed)} symbol(s) written "
        f"and of {len(sample)} other(s) sampled"
    )


def _score_session(store, ready: Ready, monitoring: MonitoringConfig) -> DriftReport | None:
    """Score the newest session; its drift report is written with the scores, pending its monitoring run."""
    from training.infra import db
    from training.serving.daily_scores import SCORES_TABLE, upsert_scores
    from training.serving.drift import check_drift
    from training.serving.monitoring_runs import record_pending
    from training.serving.newest_session import session_symbols
    from training.serving.scorer import Predictor
    from training.serving.universe_scores import score_universe

    model = ready.model
    session, newest = session_symbols()
    result = score_universe(Predictor(store, model, log="update"), list(newest), newest)
    report = None
    if ready.reference is not None and result.scores:
        report = check_drift(ready.reference, result.features, monitoring.drift_alpha)
    with db.transaction() as conn:
        written = upsert_scores(conn, result.scores, model.uri)
        if written and report is not None:  # a rerun of a scored session has its run already (or pending)
            record_pending(conn, session, model.uri, report, len(result.scores), len(result.skipped))
    skipped = ""
    if result.skipped:
        first = next(iter(result.skipped.items()))
        skipped = f"; {len(result.skipped)} not scored (first: {first[0]}: {first[1]})"
    click.echo(
        f"scores: {len(result.scores)} symbol(s) of the session of {session} scored with {model.label}, "
        f"{written} new or changed row(s) in {SCORES_TABLE}{skipped}"
    )
    if report is None:
        why = "no symbol was scored" if ready.reference else f"{model.label} recorded no session distribution (retrain)"
        click.echo(f"drift: not checked, {why}")
    elif report.drifted:
        click.echo(f"drift: session {session}: {report.summary()}")  # a result, not an error
    else:
        click.echo(f"drift: {report.summary()}")
    return report


def _rescore_changed(store, ready: Ready) -> None:
    """Scores of past bars whose feature rows changed since, scored again; one line saying how many."""
    from training.infra import db
    from training.serving.daily_scores import SCORES_TABLE
    from training.serving.model_loading import load_model
    from training.serving.rescore import rescore_changed

    with db.transaction() as conn:
        done = rescore_changed(conn, store, ready.model, load_model)
    notes = ""
    if done.replaced:
        notes += f"; {', '.join(done.replaced)} no longer resolve(s): re-scored with {ready.model.label} instead"
    if done.skipped:
        first = next(iter(done.skipped.items()))
        notes += f"; {len(done.skipped)} not re-scored (first: {first[0]}: {first[1]})"
    click.echo(
        f"re-scored: {done.rescored} earlier row(s) of {SCORES_TABLE} whose features changed after scoring, "
        f"{done.changed} with a new score{notes}"
    )


def _log_pending(monitoring: MonitoringConfig) -> list[str]:
    """Log the monitoring run of every pending session (this one's, and any a crashed run left); the sessions
    among them that drifted but were not reported by this run's own check are returned as alerts."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from training.infra import db, settings
    from training.serving.drift import log_monitoring_run
    from training.serving.monitoring_runs import mark_logged, pending_runs
    from training.serving.update_guard import mlflow_unusable

    alerts = []
    with db.connect(autocommit=True) as conn:
        for pending in pending_runs(conn):
            tags = {"session": str(pending.session), "model": pending.model_uri}
            metrics = {"scored": pending.scored, "not_scored": pending.not_scored}
            try:
                run_id = log_monitoring_run(pending.report, monitoring.experiment, tags, metrics)
            except (MlflowException, SQLAlchemyError, OSError) as exc:
                error = mlflow_unusable(settings.mlflow_tracking_uri(), exc)
                error.message += (
                    f"; the scores are written, session {pending.session}'s monitoring run is pending "
                    "(the next update logs it)"
                )
                raise error from None
            mark_logged(conn, pending, run_id)
            click.echo(f"monitoring: session {pending.session} ({pending.model_uri}): MLflow run {run_id}")
            if pending.report.drifted:
                alerts.append(str(pending.session))
    return alerts
