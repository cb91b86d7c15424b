"""Scoring a whole universe at once (``update``'s last stage, ``POST /predict``) vs one ``predict`` per symbol.

A synthetic universe of 2,000 symbols x 260 business days (quick: 100 x 120) goes through ingest,
compute-features, feast apply and materialize in a database and Feast project of its own, on Redis
(REDIS_URL). The model is the trainer's default size (RobustScaler + LGBMClassifier, 200 trees) fitted on
those features. Subject: ``score_universe`` over every symbol (the newest-bar query, online reads of 1,000
symbols each, every check, one ``predict_proba``), best of 3, with the online reads' and the model's own share
timed apart. Reference, same run: the same symbols through ``Predictor.predict``, one call each.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

from benchmarks.bench_online import _command, _model
from benchmarks.common import Result, scratch_database
from benchmarks.universe import write_universe
from training.contract import AUDIT_FEATURE, DEFAULT_FEATURE_SERVICE
from training.errors import ProjectError
from training.infra import settings

NAME = "ohlcv_bench_batch_scores"


def _environment(folder: Path) -> dict[str, str]:
    import os

    return {"PGDATABASE": NAME, "FEAST_PROJECT": NAME, "OHLCV_STATE_DIR": str(folder),
            "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"}  # fmt: skip


def _best(call, repeat: int = 3) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = call()
        best = min(best, time.perf_counter() - started)
    return best, value


def run(quick: bool) -> list[Result]:
    import os

    symbols_n, days = (100, 120) if quick else (2000, 260)
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        os.environ.update(_environment(folder))
        settings.check_redis()
        scratch_database(NAME, create=True)
        try:
            universe = write_universe(folder / "universe.csv.gz", symbols_n, days)
            for args in (("ingest", str(universe.path)), ("compute-features",), ("feast", "apply"), ("materialize",)):
                _command(*args)
            from training.feast_store.repository import feature_store
            from training.serving.model_loading import LoadedModel
            from training.serving.online_store import offline_symbols
            from training.serving.scorer import Predictor, feature_frame
            from training.serving.universe_scores import READ_BLOCK, score_universe

            store = feature_store()
            service = store.get_feature_service(DEFAULT_FEATURE_SERVICE)
            inputs = [f.name for p in service.feature_view_projections for f in p.features if f.name != AUDIT_FEATURE]
            model = LoadedModel("in-memory", "in-memory", _model(store, inputs), inputs, DEFAULT_FEATURE_SERVICE)
            predictor = Predictor(store, model)
            symbols = offline_symbols()
            batch_seconds, result = _best(lambda: score_universe(predictor, symbols))
            blocks = [symbols[i : i + READ_BLOCK] for i in range(0, len(symbols), READ_BLOCK)]
            read_seconds, rows = _best(lambda: [row for block in blocks for row in predictor.read_many(block)])
            matrix = feature_frame(rows, inputs)
            model_seconds, _ = _best(lambda: model.estimator.predict_proba(matrix))
            started = time.perf_counter()
            singles = {}
            for symbol in symbols:
                with contextlib.suppress(ProjectError):  # refused one by one as the batch refuses it
                    singles[symbol] = predictor.predict(symbol).probability
            loop_seconds = time.perf_counter() - started
            scored = len(result.scores)
            if {s.symbol: s.probability for s in result.scores} != singles:
                raise AssertionError("the batch and the per-symbol predictions differ")
            store._get_provider().teardown_infra(NAME, store.list_feature_views(), store.list_entities())
        finally:
            scratch_database(NAME, create=False)
            os.environ.clear()
            os.environ.update(saved)
    return [
        Result(
            benchmark="batch scores",
            size=f"{len(symbols):,} symbols ({scored:,} scored), {len(inputs)} inputs",
            subject=f"score_universe (online reads {read_seconds:.2f} s, predict_proba {model_seconds:.3f} s)",
            subject_seconds=batch_seconds,
            reference=f"{len(symbols):,} x Predictor.predict",
            reference_seconds=loop_seconds,
            target="ratio reported",
            notes="Redis on loopback; RobustScaler + LGBMClassifier(200 trees); same probabilities checked",
        )
    ]
