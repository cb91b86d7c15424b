"""``serve``: the predict command over HTTP, GET /predict/{symbol}, with the model loaded once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from training.commands.options import trust_pickle_option

if TYPE_CHECKING:
    from fastapi import FastAPI

    from training.serving.scorer import Predictor


def create_app(predictor: Predictor) -> FastAPI:
    """GET /predict/{symbol}[?as_of=...] -> the prediction as JSON; 404 unknown or not online, 409 stale or mixed,
    422 unusable, 503 naming the store that failed or stayed silent past OHLCV_SERVICE_TIMEOUT. POST /predict
    with {"symbols": [...]} (or {} for every symbol of the newest session) scores many at once.

    GET /health answers from memory (the process is up, the model loaded); GET /ready reads both stores.
    The handlers are plain functions, so FastAPI runs them in its thread pool and the event loop never waits
    on a store; every store call inside is bounded (:mod:`training.serving.bounded`).
    """
    from fastapi import Body, FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse

    from training.contract import normalise_symbols
    from training.errors import InputError, ServiceUnavailable
    from training.serving.scorer import StaleFeatures, SymbolNotServed, parse_as_of
    from training.serving.universe_scores import score_universe, session_symbols

    app = FastAPI(title="ohlcv predict", description=f"{predictor.model.label} on {predictor.model.feature_service}")

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(request: Request, exc: ServiceUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "service": getattr(exc, "service", "unknown")}, status_code=503)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # JSON, never a plain-text 500
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return JSONResponse({"detail": f"{type(exc).__name__}: {first}"}, status_code=500)

    @app.get("/predict/{symbol}")
    def predict(symbol: str, as_of: str | None = None) -> dict:
        try:
            return predictor.predict(symbol, parse_as_of(as_of) if as_of else None).as_dict()
        except SymbolNotServed as exc:
            raise HTTPException(404, str(exc)) from None
        except StaleFeatures as exc:
            raise HTTPException(409, str(exc)) from None
        except InputError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.post("/predict")
    def predict_many(symbols: list[str] | None = Body(default=None, embed=True)) -> dict:  # noqa: B008 (FastAPI)
        """Score many symbols in one online read: those named, else every symbol of the newest session. The
        numbers `update` writes to predictions.daily_scores; symbols that cannot be scored say why."""
        newest = None
        if symbols is None:
            _, newest = predictor.offline.call(session_symbols)
            symbols = list(newest)
        else:
            symbols = normalise_symbols(symbols)
            if not symbols:
                raise HTTPException(422, "no symbols given")
        result = score_universe(predictor, symbols, newest)
        return {
            "model": predictor.model.label,
            "scores": [score.as_dict() for score in result.scores],
            "not_scored": result.skipped,
        }

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": predictor.model.label, "feature_service": predictor.model.feature_service}

    @app.get("/ready")
    def ready() -> dict:
        return {"ready": True, "services": predictor.ready()}

    return app


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option("--model-uri", help="MLflow model URI (default: the registered model's champion, else newest).")
@trust_pickle_option
def serve(host: str, port: int, model_uri: str | None, trust_pickle: bool) -> None:
    """Serve GET /predict/{symbol}?as_of=... over HTTP (the same answer as `predict --json`), and POST /predict
    {"symbols": [...]} for many symbols at once (none named: every symbol of the newest session).

    The model and the Feast store are loaded once at start-up; freshness is judged as in `predict`. Every call
    to Redis or PostgreSQL is bounded by OHLCV_SERVICE_TIMEOUT (default 2 s): past it, or when a store is
    down, the answer is 503 with a JSON body naming the store. GET /health says the process is up (no store
    is read); GET /ready reads both stores.
    """
    import uvicorn

    from training.feast_store.repository import feature_store
    from training.serving.model_loading import load_model
    from training.serving.scorer import Predictor

    model = load_model(model_uri, trust_pickle=trust_pickle)  # refused before Feast's seconds-long import
    predictor = Predictor(feature_store(), model)
    click.echo(f"serving {predictor.model.label} on http://{host}:{port}/predict/{{symbol}}")
    uvicorn.run(create_app(predictor), host=host, port=port, log_level="warning")
