"""`serve` under load: latency percentiles and error counts of POST /predict {} over a 500-symbol universe.

Three cases, each against a real `python -m training serve` process (default --workers and --queue):

1. Redis healthy: 50 concurrent `POST /predict {}` (every symbol of the newest session). Every answer must be 200;
   the reference is one request alone on the same server.
2. Redis silent (a TCP proxy that accepts and passes nothing): 200 concurrent `POST /predict {}`. Every answer
   must be 503 (naming Redis, or "busy") within OHLCV_SERVICE_TIMEOUT + 0.5 s; the reference is that promise.
3. Recovery: the proxy forwards again; the first GET /ready must be 200 (then a POST /predict {} too).

The universe (benchmarks/universe.py) goes through the project's own commands in a database and Feast project of
its own (``ohlcv_bench_serve``); the model is a Pipeline(RobustScaler, LGBMClassifier) logged to a throwaway
MLflow backend. The load client runs in this process (threads over urllib), the server in its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.common import Result, scratch_database
from benchmarks.tcp_proxy import switchable_proxy
from benchmarks.universe import write_universe
from training.contract import DEFAULT_FEATURE_SERVICE
from training.infra import settings

NAME = "ohlcv_bench_serve"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
TIMEOUT = 2.0  # OHLCV_SERVICE_TIMEOUT of the served process (the documented default)
HEALTHY_CLIENTS, SILENT_CLIENTS = 50, 200
SYMBOL_CLIENTS, SYMBOL_REQUESTS = 8, 250  # GET /predict/{symbol}: with the prediction log, and without
STARTUP_SECONDS = 900  # importing Feast and MLflow on a busy 2-core machine takes minutes


@contextmanager
def _environment(state: Path) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(
        {
            "PGDATABASE": NAME,
            "FEAST_PROJECT": NAME,
            "REDIS_URL": os.environ.get("REDIS_URL") or DEFAULT_REDIS,
            "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
            "OHLCV_STATE_DIR": str(state),
            "OHLCV_SERVICE_TIMEOUT": f"{TIMEOUT:g}",
        }
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _command(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "training", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"python -m training {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def _prepare(state: Path, symbols: int, days: int) -> str:
    """The universe through ingest, compute-features, feast apply and materialize; returns the logged model's URI."""
    settings.check_redis()
    scratch_database(NAME, create=True)
    universe = write_universe(state / "universe.csv.gz", symbols, days, seed=32)
    for args in (("ingest", str(universe.path)), ("compute-features",), ("feast", "apply"), ("materialize",)):
        _command(*args)
    return _log_model()


def _log_model() -> str:
    """The benchmark's model (bench_online's recipe) logged with skops and the service tag, as the trainer logs."""
    import mlflow
    import mlflow.sklearn
    import skops.io
    from mlflow.models import infer_signature

    from benchmarks.bench_online import _model
    from training.contract import AUDIT_FEATURE
    from training.feast_store.repository import feature_store

    service = feature_store().get_feature_service(DEFAULT_FEATURE_SERVICE)
    inputs = [f.name for p in service.feature_view_projections for f in p.features if f.name != AUDIT_FEATURE]
    pipeline = _model(None, inputs)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri())
    example = _example(inputs)
    experiment = mlflow.create_experiment(NAME, artifact_location=settings.mlflow_artifact_root())
    with mlflow.start_run(experiment_id=experiment, tags={"feature_service": DEFAULT_FEATURE_SERVICE}):
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            serialization_format="skops",
            skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)),
            signature=infer_signature(example, pipeline.predict_proba(example)),
            pyfunc_predict_fn="predict_proba",
            pip_requirements=["scikit-learn", "lightgbm", "skops"],
        )
    return info.model_uri


def _example(inputs: list[str]):
    import pandas as pd

    return pd.DataFrame([[0.0] * len(inputs)], columns=inputs)


@contextmanager
def _server(model_uri: str, redis_url: str, *options: str) -> Iterator[int]:
    """`python -m training serve` on a free port, pointed at ``redis_url``; yields the port once /health answers.
    Ended with SIGTERM (uvicorn's graceful shutdown: the prediction log is flushed)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "REDIS_URL": redis_url}
    args = [sys.executable, "-m", "training", "serve", "--port", str(port), "--model-uri", model_uri, *options]
    log = Path(os.environ["OHLCV_STATE_DIR"]) / f"serve-{port}.log"  # a file: a full pipe would stall the server
    with log.open("w") as sink:
        process = subprocess.Popen(args, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while _call(port, "GET", "/health", timeout=10)[0] != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"serve did not start within {STARTUP_SECONDS} s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        process.wait(60)


def _call(port: int, method: str, path: str, timeout: float = 900) -> tuple[int, float, str]:
    """(status, seconds, detail) of one request; status 0 when the connection failed."""
    data = b"{}" if method == "POST" else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status, time.perf_counter() - started, ""
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            detail = json.loads(body).get("detail", "")
        except ValueError:
            detail = body.decode(errors="replace")
        return error.code, time.perf_counter() - started, str(detail)
    except OSError as error:
        return 0, time.perf_counter() - started, str(error)


def _call_json(port: int, path: str) -> list[str]:
    """The symbols POST /predict {} scored (the universe the symbol load cycles through)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=900) as response:
        return [score["symbol"] for score in json.loads(response.read())["scores"]]


def _burst(port: int, clients: int) -> list[tuple[int, float, str]]:
    """``clients`` concurrent POST /predict {}, released together."""
    import threading

    start = threading.Barrier(clients)

    def one(_: int) -> tuple[int, float, str]:
        start.wait()
        return _call(port, "POST", "/predict")

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(clients)))


def _symbol_load(port: int, symbols: list[str]) -> list[tuple[int, float, str]]:
    """SYMBOL_CLIENTS clients, each sending SYMBOL_REQUESTS GET /predict/{symbol} one after the other (the online
    path: one read, one predict_proba, one logged row each)."""
    import threading

    start = threading.Barrier(SYMBOL_CLIENTS)

    def client(index: int) -> list[tuple[int, float, str]]:
        start.wait()
        return [
            _call(port, "GET", f"/predict/{symbols[(index * SYMBOL_REQUESTS + i) % len(symbols)]}")
            for i in range(SYMBOL_REQUESTS)
        ]

    with ThreadPoolExecutor(SYMBOL_CLIENTS) as pool:
        return [answer for answers in pool.map(client, range(SYMBOL_CLIENTS)) for answer in answers]


def _logged_rows(since: datetime) -> int:
    """Rows serve logged for requests scored from ``since`` on (this machine's clock, as the server's)."""
    from training.infra import db
    from training.serving.prediction_log import LOG_TABLE

    with db.connect() as conn:
        if conn.execute("SELECT to_regclass(%s)", (LOG_TABLE,)).fetchone()[0] is None:
            return 0
        query = f"SELECT count(*) FROM {LOG_TABLE} WHERE source = 'serve' AND request_time >= %s"
        return conn.execute(query, (since,)).fetchone()[0]


def _describe(answers: list[tuple[int, float, str]]) -> str:
    statuses = Counter(status for status, _, _ in answers)
    kinds = Counter(
        "busy" if detail.startswith("busy") else "Redis" if "did not answer" in detail else detail[:40]
        for status, _, detail in answers
        if status == 503
    )
    seconds = np.array([s for _, s, _ in answers])
    counts = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
    why = f" (503s: {', '.join(f'{k} {n}' for k, n in kinds.most_common())})" if kinds else ""
    p50, p99 = np.percentile(seconds, [50, 99])
    # A "busy" 503 reads no store: its latency is the machine's (CPU, event loop), never a store's timeout.
    slowest = {}
    for status, took, detail in answers:
        if status == 503:
            kind = "busy" if detail.startswith("busy") else "store"
            slowest[kind] = max(took, slowest.get(kind, 0.0))
    worst = "".join(f", slowest {kind} 503 {took:.3f} s" for kind, took in sorted(slowest.items()))
    extremes = f"min {seconds.min():.3f} s, max {seconds.max():.3f} s"
    return f"status {counts}{why}; p50 {p50:.3f} s, p99 {p99:.3f} s, {extremes}{worst}"


def _percentiles(answers: list[tuple[int, float, str]]) -> tuple[float, float]:
    seconds = np.array([s for _, s, _ in answers])
    return float(np.percentile(seconds, 50)), float(np.percentile(seconds, 99))


def run(quick: bool) -> list[Result]:
    symbols, days = (100, 120) if quick else (500, 250)
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as folder, _environment(Path(folder)):
        model_uri = _prepare(Path(folder), symbols, days)
        redis = settings.redis()
        assert redis is not None
        try:
            with _server(model_uri, os.environ["REDIS_URL"]) as port:
                alone = [_call(port, "POST", "/predict") for _ in range(3)]  # the first warms the model and Feast
                healthy = _burst(port, HEALTHY_CLIENTS)
                universe = _call_json(port, "/predict")
                since = datetime.now(UTC)
                with_log = _symbol_load(port, universe)
            logged = _logged_rows(since)  # after SIGTERM: what the shutdown flushed counts too
            with _server(model_uri, os.environ["REDIS_URL"], "--no-log-predictions") as port:
                _symbol_load(port, universe[:SYMBOL_CLIENTS])  # warm-up
                without_log = _symbol_load(port, universe)
            with switchable_proxy(redis.host, redis.port) as proxy:
                url = f"redis://127.0.0.1:{proxy.port}/{redis.db}"
                with _server(model_uri, url) as port:
                    warm = _call(port, "POST", "/predict")
                    proxy.silent = True
                    silent = _burst(port, SILENT_CLIENTS)
                    ready_silent = _call(port, "GET", "/ready")
                    proxy.silent = False
                    ready_back = _call(port, "GET", "/ready")
                    predict_back = _call(port, "POST", "/predict")
        finally:
            from training.feast_store.repository import feature_store

            store = feature_store()
            store._get_provider().teardown_infra(NAME, store.list_feature_views(), store.list_entities())
            scratch_database(NAME, create=False)

    size = f"{symbols} symbols x {days} days"
    logged_p50, logged_p99 = _percentiles(with_log)
    bare_p50, bare_p99 = _percentiles(without_log)
    log_results = [
        Result(
            benchmark=f"serve GET /predict/{{symbol}} with the prediction log, {SYMBOL_CLIENTS} clients, {q}",
            size=size,
            subject="--log-predictions (default)",
            subject_seconds=subject,
            reference="--no-log-predictions",
            reference_seconds=reference,
            target="ratio near 1 (the log is written off the request path)",
            notes=f"with: {_describe(with_log)}; without: {_describe(without_log)}; rows logged {logged} of "
            f"{sum(status == 200 for status, _, _ in with_log)} answered 200",
        )
        for q, subject, reference in (("p50", logged_p50, bare_p50), ("p99", logged_p99, bare_p99))
    ]
    alone_p50 = float(np.median([s for _, s, _ in alone[1:]]))
    healthy_p50, healthy_p99 = _percentiles(healthy)
    silent_p50, silent_p99 = _percentiles(silent)
    promise = TIMEOUT + 0.5
    return [
        *log_results,
        Result(
            benchmark=f"serve healthy Redis, {HEALTHY_CLIENTS} concurrent POST /predict {{}} p50",
            size=size,
            subject="50 concurrent requests",
            subject_seconds=healthy_p50,
            reference="one request alone",
            reference_seconds=alone_p50,
            target="every answer 200",
            notes=_describe(healthy),
        ),
        Result(
            benchmark=f"serve healthy Redis, {HEALTHY_CLIENTS} concurrent POST /predict {{}} p99",
            size=size,
            subject="50 concurrent requests",
            subject_seconds=healthy_p99,
            reference="one request alone",
            reference_seconds=alone_p50,
            target="every answer 200",
            notes=f"alone: {', '.join(f'{s:.3f} s ({code})' for code, s, _ in alone)}",
        ),
        Result(
            benchmark=f"serve silent Redis, {SILENT_CLIENTS} concurrent POST /predict {{}} p50",
            size=size,
            subject="time to the 503",
            subject_seconds=silent_p50,
            reference=f"promise: OHLCV_SERVICE_TIMEOUT {TIMEOUT:g} s + 0.5 s",
            reference_seconds=promise,
            target="every answer 503 within timeout + 0.5 s",
            notes=_describe(silent),
        ),
        Result(
            benchmark=f"serve silent Redis, {SILENT_CLIENTS} concurrent POST /predict {{}} p99",
            size=size,
            subject="time to the 503",
            subject_seconds=silent_p99,
            reference=f"promise: OHLCV_SERVICE_TIMEOUT {TIMEOUT:g} s + 0.5 s",
            reference_seconds=promise,
            target="ratio <= 1",
            notes=f"warm-up before silence: {warm[0]}; /ready while silent: {ready_silent[0]} "
            f"in {ready_silent[1]:.3f} s",
        ),
        Result(
            benchmark="serve recovery: first GET /ready after Redis answers again",
            size=size,
            subject="first /ready",
            subject_seconds=ready_back[1],
            reference=f"OHLCV_SERVICE_TIMEOUT {TIMEOUT:g} s",
            reference_seconds=TIMEOUT,
            target="200 on the first call",
            notes=f"/ready {ready_back[0]} {ready_back[2][:80]}; then POST /predict {{}} {predict_back[0]} in "
            f"{predict_back[1]:.3f} s",
        ),
    ]
