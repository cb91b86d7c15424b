"""``predict``: score the newest bar of a symbol with the registered model and its online features."""

from __future__ import annotations

import json

import click

from training.commands.options import trust_pickle_option


@click.command()
@click.option("--symbol", required=True, help="Ticker to score, e.g. AAPL.")
@click.option(
    "--model-uri",
    help="MLflow model URI (default: models:/<mlflow.registered_model>@champion, else its newest version).",
)
@click.option(
    "--as-of",
    "as_of",
    help="Judge freshness at this time (a date: the end of that day in New York; default: the newest offline bar).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the prediction as one JSON object.")
@trust_pickle_option
def predict(symbol: str, model_uri: str | None, as_of: str | None, as_json: bool, trust_pickle: bool) -> None:
    """Read the model's feature service online and print probability, class and the features' bar time.

    The service comes from the model run's `feature_service` tag and the column order from its
    signature. Features older than the views' TTL at the newest offline bar of the symbol (or at
    --as-of) are refused, never judged against today's date, and so is a row with a missing or
    non-finite input (too short a history, zero volume). Only skops models are loaded unless
    --trust-pickle. The scored row is recorded in serving.prediction_log, for `replay`.
    """
    from training.infra import settings
    from training.serving.scorer import parse_as_of

    moment = parse_as_of(as_of) if as_of else None
    settings.service_timeout_seconds()  # a malformed limit is refused before any service is asked
    settings.check_feast_services()  # before the model is loaded: one line naming a service that does not answer
    from training.feast_store.repository import feature_store
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor

    model = load_model(model_uri, trust_pickle=trust_pickle)
    prediction = Predictor(feature_store(), model, log="predict").predict(symbol, as_of=moment)
    if as_json:
        click.echo(json.dumps(prediction.as_dict()))
        return
    click.echo(f"symbol         {prediction.symbol}")
    click.echo(f"probability    {prediction.probability:.6f}")
    click.echo(f"class          {prediction.as_dict()['class']}")
    click.echo(f"bar_timestamp  {prediction.bar_timestamp} ({prediction.reference} {prediction.reference_time})")
    click.echo(f"model          {prediction.model}")
    click.echo(f"features       {prediction.feature_service} ({len(prediction.features)} inputs)")
    for note in prediction.notes:
        click.secho(f"note: {note}", err=True, fg="yellow")
