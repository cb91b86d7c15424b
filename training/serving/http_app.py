"""The HTTP face of :class:`~training.serving.scorer.Predictor`: what `serve` runs under uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
