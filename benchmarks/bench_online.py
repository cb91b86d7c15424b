"""Online serving latency: Feast's get_online_features for one symbol, and a whole prediction, p50/p99.

Runs against Redis on loopback (REDIS_URL, default redis://127.0.0.1:6379/0) in a database and Feast
project of its own (``ohlcv_bench_online``), filled from the bundled data by the project's own commands.
Each figure sits beside a floor measured in the same run on the same keys: a raw redis-py HGETALL of the
symbol's hash (one round trip, no decoding) and, for predictions, that HGETALL plus predict_proba on a
prepared row. Target (SPEC): read p99 <= 5 ms.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import psycopg
from psycopg import sql

from benchmarks.common import Result
from training.contract import DEFAULT_FEATURE_SERVICE
from training.infra import settings

NAME = "ohlcv_bench_online"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
SERVICE = DEFAULT_FEATURE_SERVICE
WARMUP_CALLS = 50


@contextmanager
def _environment() -> Iterator[None]:
    """Point every project call (and the commands run below) at the benchmark's database and project."""
    saved = dict(os.environ)
    os.environ.update(
        {"PGDATABASE": NAME, "FEAST_PROJECT": NAME, "REDIS_URL": os.environ.get("REDIS_URL") or DEFAULT_REDIS}
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _recreate_database() -> None:
    pg = settings.check_postgres(replace(settings.postgres(), dbname="postgres"))  # one-line error if down
    _drop_database()
    with psycopg.connect(pg.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(NAME)))


def _drop_database() -> None:
    with psycopg.connect(settings.postgres().conninfo("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(NAME)))


def _command(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "training", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"python -m training {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def _prepare() -> None:
    """The bundled data through ingest, compute-features, feast apply and materialize."""
    settings.check_redis()
    _recreate_database()
    for args in (
        ("ingest", str(settings.PROJECT_ROOT / "data" / "stocks.csv.gz")),
        ("compute-features",),
        ("feast", "apply"),
        ("materialize",),
    ):
        _command(*args)


def _latencies(call: Callable[[str], object], symbols: list[str], calls: int) -> np.ndarray:
    """Seconds per call, cycling through the symbols, after a warm-up that is not counted."""
    for i in range(WARMUP_CALLS):
        call(symbols[i % len(symbols)])
    gc.collect()
    out = np.empty(calls)
    for i in range(calls):
        symbol = symbols[i % len(symbols)]
        start = time.perf_counter()
        call(symbol)
        out[i] = time.perf_counter() - start
    return out


def _model(store, inputs: list[str]):
    """A Pipeline(RobustScaler, LGBMClassifier) of the trainer's default size, fitted on the real features."""
    import pandas as pd
    from lightgbm import LGBMClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler

    from training.indicators.scale_free import scale_free_forms
    from training.infra import db

    with db.connect() as conn:
        table = db.copy_out(conn, "SELECT * FROM features.technical_indicators ORDER BY symbol, event_timestamp")
    frame = pd.concat([table, pd.DataFrame(scale_free_forms({c: table[c].tolist() for c in table.columns}))], axis=1)
    up = frame.groupby("symbol")["close"].shift(-1) > frame["close"]
    keep = frame[inputs].notna().all(axis=1)
    scaler = RobustScaler().set_output(transform="pandas")
    classifier = LGBMClassifier(n_estimators=200, num_leaves=31, max_depth=5, n_jobs=1, verbose=-1, random_state=0)
    return Pipeline([("scaler", scaler), ("model", classifier)]).fit(frame.loc[keep, inputs], up[keep].astype(int))


def _row(kind: str, what: str, subject: np.ndarray, reference: np.ndarray, ref_name: str, target: str, notes: str):
    rows = []
    for label, q in (("p50", 50), ("p99", 99)):
        rows.append(
            Result(
                benchmark=f"{kind} {label}",
                size=f"{len(subject)} calls, 1 symbol each",
                subject=what,
                subject_seconds=float(np.percentile(subject, q)),
                reference=ref_name,
                reference_seconds=float(np.percentile(reference, q)),
                target=target if label == "p99" else "",
                notes=f"{notes}; max {subject.max() * 1e3:.2f} ms vs {reference.max() * 1e3:.2f} ms",
            )
        )
    return rows


def run(quick: bool) -> list[Result]:
    calls = 200 if quick else 2000
    with _environment():
        _prepare()
        import redis as redis_client
        from feast.infra.online_stores.helpers import _redis_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        from training.contract import AUDIT_FEATURE
        from training.feast_store.repository import feature_store
        from training.serving.model_loading import LoadedModel
        from training.serving.online_store import offline_symbols
        from training.serving.scorer import Predictor, feature_frame

        store = feature_store()
        symbols = offline_symbols()
        service = store.get_feature_service(SERVICE)
        inputs = [f.name for p in service.feature_view_projections for f in p.features if f.name != AUDIT_FEATURE]
        predictor = Predictor(store, LoadedModel("in-memory", "in-memory", _model(store, inputs), inputs, SERVICE))
        as_of = max(predictor.read(s)[AUDIT_FEATURE] for s in symbols)  # judged at the newest bar, no SQL per call

        redis = settings.redis()
        client = redis_client.Redis(host=redis.host, port=redis.port, db=redis.db, password=redis.password)
        version = store.config.entity_key_serialization_version
        keys = {}
        for s in symbols:
            entity = EntityKey(join_keys=["symbol"], entity_values=[Value(string_val=s)])
            keys[s] = _redis_key(NAME, entity, entity_key_serialization_version=version)
            if not client.hgetall(keys[s]):
                raise RuntimeError(f"no Redis hash for {s}: Feast's key layout changed?")
        rows = {s: feature_frame([predictor.read(s)], inputs) for s in symbols}

        read = _latencies(
            lambda s: store.get_online_features(features=service, entity_rows=[{"symbol": s}]), symbols, calls
        )
        floor = _latencies(lambda s: client.hgetall(keys[s]), symbols, calls)
        predict = _latencies(lambda s: predictor.predict(s, as_of=as_of), symbols, calls)
        predict_floor = _latencies(
            lambda s: (client.hgetall(keys[s]), predictor.model.estimator.predict_proba(rows[s])), symbols, calls
        )
        client.close()
        store._get_provider().teardown_infra(NAME, store.list_feature_views(), store.list_entities())
        _drop_database()

    where = f"Redis {redis.host}:{redis.port}/{redis.db}, {len(symbols)} symbols, {len(inputs)} model inputs"
    return [
        *_row(
            "online read",
            f"get_online_features({SERVICE})",
            read,
            floor,
            "redis-py HGETALL of the same key",
            "p99 <= 5 ms",
            where,
        ),
        *_row(
            "online predict",
            "Predictor.predict (read + freshness + predict_proba)",
            predict,
            predict_floor,
            "HGETALL + predict_proba on a prepared row",
            "",
            f"{where}; RobustScaler + LGBMClassifier(200 trees)",
        ),
    ]
