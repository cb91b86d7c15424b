"""Building the training set end to end at panel scale: time and peak memory of ``build-dataset``.

A synthetic panel of 500 symbols x 2,520 daily bars (10 years; quick: 20 x 300) goes through the real
pipeline in its own database and Feast project: ingest, compute-features, feast apply, then
build-dataset in a fresh process whose peak RSS is the number the SPEC bounds (<= 2 GB at 1.26 M rows).
The reference, in the same run, is the point-in-time retrieval alone of the same entity rows through
the same feature service (the step that dominates), so the ratio is the cost of everything else:
labels, the on-demand transformation, weights, the split, the scaler and the Parquet write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_indicators import synthetic_panel
from benchmarks.common import Result, peak_rss_mb, scratch_database
from training.contract import DEFAULT_FEATURE_SERVICE

DATABASE = "ohlcv_bench_dataset"
PROJECT = "ohlcv_bench_dataset"


def _environment(state: Path) -> dict[str, str]:
    return {**os.environ, "PGDATABASE": DATABASE, "FEAST_PROJECT": PROJECT, "OHLCV_STATE_DIR": str(state)}


def _prepare(symbols: int, bars: int, env: dict[str, str]) -> None:
    """A fresh database holding the panel's bars and features, and the Feast repository applied."""
    scratch_database(DATABASE, create=True)
    subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_dataset", "prepare", f"{symbols}x{bars}"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run([sys.executable, "-m", "training", "feast", "apply"], env=env, check=True, capture_output=True)


def _load(symbols: int, bars: int) -> None:
    """In the benchmark's environment: ingest the synthetic bars and compute their features."""
    from training.indicators.backfill import compute_features
    from training.ingestion.upsert import upsert_bars

    panel = synthetic_panel(symbols, bars)
    panel["trade_date"] = panel["event_timestamp"].dt.tz_convert("America/New_York").dt.date
    upsert_bars(panel)
    compute_features(None, start=None, end=None, full=True, progress=False)


def worker(kind: str, out: str) -> dict[str, float]:
    """One measured step in this fresh process: the whole build, or the retrieval it contains."""
    from training.config import load_config
    from training.feast_store.repository import feature_store

    store = feature_store()
    start = time.perf_counter()
    if kind == "build":
        from training.dataset.builder import build_dataset

        dataset = build_dataset(load_config(), store, Path(out), progress=lambda message: None)
        rows = dataset.n_rows
    else:
        from training.dataset.historical_features import describe_service, point_in_time_features
        from training.dataset.offline_bars import load_bars

        entities = load_bars()[["symbol", "event_timestamp"]]
        rows = len(point_in_time_features(store, entities, describe_service(store, DEFAULT_FEATURE_SERVICE)))
    return {
        "seconds": time.perf_counter() - start,
        "peak_mb": peak_rss_mb(),
        "rows": rows,
    }


def _measure(kind: str, env: dict[str, str], out: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_dataset", kind, str(out)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[Result]:
    symbols, bars = (20, 300) if quick else (500, 2520)
    with tempfile.TemporaryDirectory() as folder:
        env = _environment(Path(folder))
        _prepare(symbols, bars, env)
        try:
            build = min(
                (_measure("build", env, Path(folder) / "dataset") for _ in range(2)), key=lambda m: m["seconds"]
            )
            retrieval = min((_measure("retrieve", env, Path(folder)) for _ in range(2)), key=lambda m: m["seconds"])
        finally:
            scratch_database(DATABASE, create=False)
    return [
        Result(
            benchmark="dataset",
            size=f"{symbols} x {bars} bars -> {int(build['rows']):,} samples",
            subject="build-dataset (peak RSS {:,.0f} MB)".format(build["peak_mb"]),
            subject_seconds=build["seconds"],
            reference="get_historical_features of the same rows (peak RSS {:,.0f} MB)".format(retrieval["peak_mb"]),
            reference_seconds=retrieval["seconds"],
            target="peak <= 2048 MB",
            notes=f"retrieved {int(retrieval['rows']):,} rows; best of 2 fresh processes each",
        )
    ]


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        _load(*map(int, sys.argv[2].split("x")))
    else:
        print(json.dumps(worker(sys.argv[1], sys.argv[2])))
