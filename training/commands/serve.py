"""``serve``: the predict command over HTTP, GET /predict/{symbol}, with the model loaded once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from training.commands.options import trust_pickle_option

if TYPE_CHECKING:
    from fastapi import FastAPI

    from training.serving.scorer import Predictor


def create_app(predictor: Predictor) -> FastAPI:
    """GET /predict/{symbol}[?as_of=...] -> the prediction as JSON; 404 unknown or not online, 409 stale."""
    from fastapi import FastAPI, HTTPException

    from training.errors import InputError, ProjectError
    from training.serving.scorer import StaleFeatures, SymbolNotServed, parse_as_of

    app = FastAPI(title="ohlcv predict", description=f"{predictor.model.label} on {predictor.model.feature_service}")

    # async: requests run one at a time on the event loop, so the Feast store is never shared across threads.
    @app.get("/predict/{symbol}")
    async def predict(symbol: str, as_of: str | None = None) -> dict:
        try:
            return predictor.predict(symbol, parse_as_of(as_of) if as_of else None).as_dict()
        except SymbolNotServed as exc:
            raise HTTPException(404, str(exc)) from None
        except StaleFeatures as exc:
            raise HTTPException(409, str(exc)) from None
        except InputError as exc:
            raise HTTPException(422, str(exc)) from None
        except ProjectError as exc:  # a service went away after start-up
            raise HTTPException(503, str(exc)) from None

    @app.get("/health")
    async def health() -> dict:
        return {"model": predictor.model.label, "feature_service": predictor.model.feature_service}

    return app


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option("--model-uri", help="MLflow model URI (default: the registered model's champion, else newest).")
@trust_pickle_option
def serve(host: str, port: int, model_uri: str | None, trust_pickle: bool) -> None:
    """Serve GET /predict/{symbol}?as_of=... over HTTP: the same answer as `predict --json`.

    The model and the Feast store are loaded once at start-up; freshness is judged as in `predict`.
    """
    import uvicorn

    from training.feast_store.repository import feature_store
    from training.infra import settings
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor

    settings.check_mlflow()
    model = load_model(model_uri, trust_pickle=trust_pickle)  # refused before Feast's seconds-long import
    predictor = Predictor(feature_store(), model)
    click.echo(f"serving {predictor.model.label} on http://{host}:{port}/predict/{{symbol}}")
    uvicorn.run(create_app(predictor), host=host, port=port, log_level="warning")
