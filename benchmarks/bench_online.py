"""Online serving latency, p50/p99: predict's online read of 1 and of 100 symbols, Feast's path beside the fast one.

Runs against Redis on loopback (REDIS_URL, default redis://127.0.0.1:6379/0) in a database and Feast
project of its own (``ohlcv_bench_online``), filled by the project's own commands from the bundled data and a
synthetic universe of UNIVERSE symbols (so a read of 100 distinct symbols exists). Both paths read what
predict reads (the model's service plus each view's bar and row version): Feast's ``get_online_features``
and :class:`training.serving.online_reader.OnlineReader`. Each figure sits beside a floor measured in the
same run on the same keys: a raw redis-py HGETALL of each symbol's hash (pipelined for 100; one round
trip, no decoding) and, for predictions, that HGETALL plus predict_proba on a prepared row.
Targets (issue 35): read p99 <= 1 ms for one symbol, <= 2 ms for 100.
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
from typing import Any

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
UNIVERSE = (100, 120)  # synthetic symbols x business days: past the indicators' warm-up
BLOCK = 100  # symbols per read in the many-symbol figures


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


def _prepare(folder: str) -> None:
    """The bundled data and the synthetic universe through ingest, compute-features, feast apply and materialize."""
    from pathlib import Path

    from benchmarks.universe import write_universe

    settings.check_redis()
    _recreate_database()
    universe = write_universe(Path(folder) / "universe.csv.gz", *UNIVERSE, seed=35)
    for args in (
        ("ingest", str(settings.PROJECT_ROOT / "data" / "stocks.csv.gz")),
        ("ingest", str(universe.path)),
        ("compute-features",),
        ("feast", "apply"),
        ("materialize",),
    ):
        _command(*args)


def _latencies(call: Callable[[Any], object], symbols: list, calls: int) -> np.ndarray:
    """Seconds per call, cycling through the symbols (or blocks of them), after a warm-up that is not counted."""
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


def _row(
    kind: str, what: str, subject: np.ndarray, reference: np.ndarray, ref_name: str, target: str, notes: str, each=1
):
    rows = []
    for label, q in (("p50", 50), ("p99", 99)):
        rows.append(
            Result(
                benchmark=f"{kind} {label}",
                size=f"{len(subject)} calls, {each} symbol{'s' if each > 1 else ''} each",
                subject=what,
                subject_seconds=float(np.percentile(subject, q)),
                reference=ref_name,
                reference_seconds=float(np.percentile(reference, q)),
                target=target if label == "p99" else "",
                notes=f"{notes}; max {subject.max() * 1e3:.2f} ms vs {reference.max() * 1e3:.2f} ms",
            )
        )
    return rows


def _pipelined_hgetall(client, keys: list[bytes]) -> list:
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
        return pipe.execute()


def run(quick: bool) -> list[Result]:
    import tempfile

    calls = 200 if quick else 2000
    with _environment(), tempfile.TemporaryDirectory() as folder:
        _prepare(folder)
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
        synthetic = [s for s in symbols if s.startswith("S") and s[1:].isdigit()]
        bundled = [s for s in symbols if s not in synthetic]  # scored: the synthetic bars end in 2000, stale here
        blocks = [synthetic[i : i + BLOCK] for i in range(0, len(synthetic) - BLOCK + 1, BLOCK)]
        service = store.get_feature_service(SERVICE)
        inputs = [f.name for p in service.feature_view_projections for f in p.features if f.name != AUDIT_FEATURE]
        predictor = Predictor(store, LoadedModel("in-memory", "in-memory", _model(store, inputs), inputs, SERVICE))
        if not predictor.reader.fast:
            raise RuntimeError("the online reader is not on its Redis path: is the online store Redis?")
        as_of = max(predictor.read(s)[AUDIT_FEATURE] for s in bundled)  # judged at the newest bar, no SQL per call

        redis = settings.redis()
        client = redis_client.Redis(host=redis.host, port=redis.port, db=redis.db, password=redis.password)
        version = store.config.entity_key_serialization_version
        keys = {}
        for s in symbols:
            entity = EntityKey(join_keys=["symbol"], entity_values=[Value(string_val=s)])
            keys[s] = _redis_key(NAME, entity, entity_key_serialization_version=version)
            if not client.hgetall(keys[s]):
                raise RuntimeError(f"no Redis hash for {s}: Feast's key layout changed?")
        rows = {s: feature_frame([predictor.read(s)], inputs) for s in bundled}

        refs, reader = predictor.refs, predictor.reader
        one = {
            "feast": _latencies(lambda s: store.get_online_features(refs, [{"symbol": s}]).to_dict(), bundled, calls),
            "fast": _latencies(lambda s: reader.read_many([s]), bundled, calls),
            "floor": _latencies(lambda s: client.hgetall(keys[s]), bundled, calls),
        }
        many_calls = max(20, calls // 10)
        many = {
            "feast": _latencies(
                lambda b: store.get_online_features(refs, [{"symbol": s} for s in b]).to_dict(), blocks, many_calls
            ),
            "fast": _latencies(lambda b: reader.read_many(b), blocks, many_calls),
            "floor": _latencies(lambda b: _pipelined_hgetall(client, [keys[s] for s in b]), blocks, many_calls),
        }
        predict = _latencies(lambda s: predictor.predict(s, as_of=as_of), bundled, calls)
        predict_floor = _latencies(
            lambda s: (client.hgetall(keys[s]), predictor.model.estimator.predict_proba(rows[s])), bundled, calls
        )
        client.close()
        store._get_provider().teardown_infra(NAME, store.list_feature_views(), store.list_entities())
        _drop_database()

    load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    where = f"Redis {redis.host}:{redis.port}/{redis.db}, {len(symbols)} symbols, {len(refs)} refs; {load}"
    floor_one, floor_many = "redis-py HGETALL of the same key", f"pipelined HGETALL of the same {BLOCK} keys"
    feast_name, fast_name = "Feast get_online_features(refs).to_dict()", "OnlineReader.read_many(refs)"
    results = []
    for size, runs, floor_name, target, each in (
        ("1 symbol", one, floor_one, "p99 <= 1 ms", 1),
        (f"{BLOCK} symbols", many, floor_many, "p99 <= 2 ms", BLOCK),
    ):
        for path, name in (("feast", feast_name), ("fast", fast_name)):
            speedup = np.percentile(runs["feast"], 50) / np.percentile(runs["fast"], 50)
            notes = f"{where}; Feast/fast at p50 {speedup:.1f}x"
            kind = f"online read {size}, {path} path"
            results += _row(kind, name, runs[path], runs["floor"], floor_name, target, notes, each)
    results += _row(
        "online predict",
        "Predictor.predict (fast read + checks + predict_proba)",
        predict,
        predict_floor,
        "HGETALL + predict_proba on a prepared row",
        "",
        f"{where}; RobustScaler + LGBMClassifier(200 trees)",
    )
    return results
