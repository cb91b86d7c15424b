"""``serve``: the predict command over HTTP, GET /predict/{symbol}, with the model loaded once."""

from __future__ import annotations

import click

from training.commands.options import trust_pickle_option
from training.serving.admission import DEFAULT_QUEUE, DEFAULT_WORKERS


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--model-uri", help="MLflow model URI (default: the registered model's champion, else newest).")
@click.option(
    "--workers",
    default=DEFAULT_WORKERS,
    show_default=True,
    type=click.IntRange(1, 256),
    help="/predict requests scored at once (each holds at most one connection to each store).",
)
@click.option(
    "--queue",
    default=DEFAULT_QUEUE,
    show_default=True,
    type=click.IntRange(0, 100_000),
    help="/predict requests waiting for a worker; beyond that, 503 busy at once.",
)
@click.option(
    "--log-predictions/--no-log-predictions",
    default=True,
    show_default=True,
    help="Record every scored row in serving.prediction_log (what `replay` checks); off: nothing is recorded.",
)
@trust_pickle_option
def serve(
    host: str, port: int, model_uri: str | None, workers: int, queue: int, log_predictions: bool, trust_pickle: bool
) -> None:
    """Serve GET /predict/{symbol}?as_of=... over HTTP (the same answer as `predict --json`), and POST /predict
    {"symbols": [...]} for many symbols at once (none named: every symbol of the newest session).

    The model and the Feast store are loaded once at start-up; freshness is judged as in `predict`, and a row
    whose feature views hold different bars, or different versions of one bar, is 409. Every call to Redis or
    PostgreSQL is bounded by OHLCV_SERVICE_TIMEOUT (default 2 s), counted from when a worker calls the store,
    never while a request waits: past it, or when a store is down, the answer is 503 with a JSON body naming
    the store. A store found silent is tried by one request at a time until it answers; the others get its 503
    at once. --workers requests are scored at once and --queue more wait; beyond that, 503 "busy" at once.
    GET /health says the process is up (no store is read); GET /ready reads both stores (never queued).
    Every scored row is recorded in serving.prediction_log (written in batches every second, off the request
    path, and at shutdown) for `replay`.
    """
    import uvicorn

    from training.feast_store.repository import feature_store
    from training.serving.http_app import create_app
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor

    model = load_model(model_uri, trust_pickle=trust_pickle)  # refused before Feast's seconds-long import
    predictor = Predictor(feature_store(), model, log="serve" if log_predictions else None)
    click.echo(
        f"serving {predictor.model.label} on http://{host}:{port}/predict/{{symbol}} "
        f"({workers} worker(s), {queue} queued at most)"
    )
    uvicorn.run(create_app(predictor, workers, queue), host=host, port=port, log_level="warning")
