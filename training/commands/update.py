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


@click.command()
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--model", "model_uri", help="Model to score with (default: the registered model's champion).")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="YAML overriding the defaults (its monitoring section: drift_alpha, experiment).")  # fmt: skip
def update(path: Path, model_uri: str | None, config_path: Path | None) -> None:
    """Ingest PATH (a day's bars, or any file `ingest` reads), then bring everything after it up to date.

    One line per stage: ingest, compute-features (incremental), materialize (only rows that changed),
    check-online (the symbols written, and a sample of up to 100 others), then the scores of every symbol
    whose newest bar is the newest session in the offline store, into predictions.daily_scores. Last, each
    model input's values across the scored symbols are tested (Kolmogorov-Smirnov) against the training
    rows' distribution recorded with the model, and logged as an MLflow monitoring run with a plot.
    Running it twice, or on a file that overlaps earlier ones, changes nothing the second time (the scores
    table included). Exit codes: 0 done; 1 the online store differs from the offline rows; 2 bad input
    (nothing written); 3 a service is unreachable; 4 done, but inputs drifted from the training rows (an
    alert: the scores are written).
    """
    from training.commands.compute_features import report_features
    from training.commands.ingest import describe_load
    from training.config import load_config
    from training.engines import current_engine
    from training.feast_store.repository import feature_store
    from training.ingestion.load import FileReading, load_file
    from training.serving.materialization import materialize_changed

    engine = current_engine()
    engine.require("update")
    monitoring = load_config(config_path).monitoring  # a bad file is refused before anything is written
    click.echo(describe_load(path, load_file(path, FileReading(), engine.ingest).result))
    report_features(engine.features_table(), engine.compute_features(None, None, None, full=False))
    done = materialize_changed()
    click.echo(f"online store: {len(done.symbols)} symbol(s) with a new or changed newest row written")
    store = feature_store()
    _check_parity(store, done.symbols)
    _score_session(store, model_uri, monitoring)


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


def _score_session(store, model_uri: str | None, monitoring: MonitoringConfig) -> None:
    from training.infra import db
    from training.serving.daily_scores import SCORES_TABLE, upsert_scores
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor
    from training.serving.universe_scores import score_universe, session_symbols

    session, newest = session_symbols()
    model = load_model(model_uri)
    result = score_universe(Predictor(store, model), list(newest), newest)
    with db.connect() as conn:
        written = upsert_scores(conn, result.scores, model.uri)
    skipped = ""
    if result.skipped:
        first = next(iter(result.skipped.items()))
        skipped = f"; {len(result.skipped)} not scored (first: {first[0]}: {first[1]})"
    click.echo(
        f"scores: {len(result.scores)} symbol(s) of the session of {session} scored with {model.label}, "
        f"{written} new or changed row(s) in {SCORES_TABLE}{skipped}"
    )
    _check_drift(result, model, session, written, monitoring)


def _check_drift(result, model, session, written: int, monitoring: MonitoringConfig) -> None:
    """Test the scored cross-section against the training rows; log a monitoring run when scores changed."""
    from training.serving.drift import check_drift, log_monitoring_run, reference_of

    reference = reference_of(model.uri)
    if reference is None or not result.scores:
        why = "no symbol was scored" if reference else f"{model.label} has no recorded input distribution (retrain)"
        click.echo(f"drift: not checked, {why}")
        return
    report = check_drift(reference, result.features, monitoring.drift_alpha)
    logged = ""
    if written:  # a rerun of a scored session logs nothing new
        tags = {"session": str(session), "model": model.uri}
        metrics = {"scored": len(result.scores), "not_scored": len(result.skipped)}
        logged = f" (MLflow run {log_monitoring_run(report, monitoring.experiment, tags, metrics)})"
    if not report.drifted:
        click.echo(f"drift: {report.summary()}{logged}")
        return
    click.echo(f"drift: session {session}: {report.summary()}{logged}")  # a result: the scores are written
    click.get_current_context().exit(DRIFT_EXIT_CODE)  # the alert
