"""The HTTP face of :class:`~training.serving.scorer.Predictor`: what `serve` runs under uvicorn."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import Body, Depends, FastAPI, HTTPException, Request  # names FastAPI resolves from annotations
from fastapi.responses import JSONResponse

from training.errors import InputError
from training.serving.admission import DEFAULT_QUEUE, DEFAULT_WORKERS

if TYPE_CHECKING:
    from training.serving.scorer import Predictor


def create_app(predictor: Predictor, workers: int = DEFAULT_WORKERS, queue: int = DEFAULT_QUEUE) -> FastAPI:
    """GET /predict/{symbol}[?as_of=...] -> the prediction as JSON; 404 unknown or not online, 409 stale or views
    that mix bars or versions of a bar, 422 unusable, 503 naming the store that failed or stayed silent past
    OHLCV_SERVICE_TIMEOUT, or "busy" when ``workers`` requests run and ``queue`` more wait. POST /predict with a
    JSON body {"symbols": [...]} (or {} for every symbol of the newest session) scores many at once; another
    content type is 415.

    GET /health answers from memory (the process is up, the model loaded); GET /ready reads both stores, past
    the queue, and always tries them (a store found silent is seen to recover on the first /ready after it does).
    /predict runs on the workers of :class:`~training.serving.admission.Admission`, so the event loop never
    waits on a store; every store call inside is bounded (:mod:`training.serving.bounded`).
    """
    from training.contract import normalise_symbols
    from training.errors import ServiceUnavailable
    from training.serving.admission import Admission
    from training.serving.newest_session import NewestSession
    from training.serving.scorer import StaleFeatures, SymbolNotServed, parse_as_of
    from training.serving.universe_scores import score_universe

    admission, newest_session = Admission(workers, queue), NewestSession()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        admission.shutdown()
        if predictor.log is not None:
            predictor.log.close()  # the rows still buffered are written before the process ends

    app = FastAPI(
        title="ohlcv predict",
        description=f"{predictor.model.label} on {predictor.model.feature_service}",
        lifespan=lifespan,
    )

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(request: Request, exc: ServiceUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "service": getattr(exc, "service", "unknown")}, status_code=503)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # JSON, never a plain-text 500
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return JSONResponse({"detail": f"{type(exc).__name__}: {first}"}, status_code=500)

    def predict_one(symbol: str, as_of: str | None) -> dict:
        predictor.refuse_if_suspect()  # a request that waited its turn behind a silent store fails at once
        try:
            return predictor.predict(_printable(symbol), parse_as_of(as_of) if as_of else None).as_dict()
        except SymbolNotServed as exc:
            raise HTTPException(404, str(exc)) from None
        except StaleFeatures as exc:
            raise HTTPException(409, str(exc)) from None
        except InputError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/predict/{symbol}")
    async def predict(symbol: str, as_of: str | None = None) -> dict:
        return await admission.run(predict_one, symbol, as_of)

    def score_many(symbols: list[str] | None) -> dict:
        predictor.refuse_if_suspect()
        if symbols is None:
            result = newest_session.score(predictor)
        else:
            try:
                symbols = normalise_symbols(_printable(symbol) for symbol in symbols)
            except InputError as exc:
                raise HTTPException(422, str(exc)) from None
            if not symbols:
                raise HTTPException(422, "no symbols given")
            result = score_universe(predictor, symbols)
        return {
            "model": predictor.model.label,
            "scores": [score.as_dict() for score in result.scores],
            "not_scored": result.skipped,
        }

    @app.post("/predict", dependencies=[Depends(_json_body)])
    async def predict_many(symbols: list[str] | None = Body(default=None, embed=True)) -> dict:  # noqa: B008 (FastAPI)
        """Score many symbols in one online read: those named, else every symbol of the newest session. The
        numbers `update` writes to predictions.daily_scores; symbols that cannot be scored say why."""
        return await admission.run(score_many, symbols)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": predictor.model.label, "feature_service": predictor.model.feature_service}

    @app.get("/ready")
    def ready() -> dict:  # FastAPI's own thread pool: never behind a full queue of /predict
        return {"ready": True, "services": predictor.ready()}

    return app


def _printable(symbol: str) -> str:
    """The symbol, or one line refusing a control character (a NUL would reach PostgreSQL's text and fail there)."""
    if not symbol.isprintable():
        raise InputError(f"symbol {symbol!r} contains a control character")
    return symbol


def _json_body(request: Request) -> None:
    """415 for a body that is not JSON (a text/plain body would otherwise be ignored and every symbol scored)."""
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if has_body and not (kind == "application/json" or kind.endswith("+json")):
        raise HTTPException(415, f"POST /predict takes a JSON body (Content-Type: application/json), not {kind!r}")
