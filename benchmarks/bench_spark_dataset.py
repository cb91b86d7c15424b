"""``build-dataset`` on Spark (local[2]) vs the one-box build, on the same panel, in the same run.

A synthetic universe file (500 symbols x 2,520 business days; quick: 20 x 300) is ingested and its features
computed twice with the project's own commands: into a database of its own (the one-box profile) and into
a lake of its own (``OHLCV_ENGINE=spark``), each with its own Feast project applied. Then ``python -m training
build-dataset`` runs once per profile in a fresh process; the wall time includes the process start (and, on
Spark, the JVM's). The two artifacts' fingerprints must be equal or the benchmark fails: speed only counts for
the same rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Result, scratch_database
from benchmarks.universe import write_universe

DATABASE = "ohlcv_bench_spark_dataset"
PROJECT = "ohlcv_bench_spark_dataset"


def _training(env: dict[str, str], *args: str) -> float:
    """Run ``python -m training ARGS`` in a fresh process; its wall time in seconds."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "training", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"python -m training {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def _profiles(folder: Path) -> dict[str, dict[str, str]]:
    base = {**os.environ, "PGDATABASE": DATABASE, "OHLCV_STATE_DIR": str(folder / "state")}
    base.pop("OHLCV_ENGINE", None)
    return {
        "postgres": {**base, "FEAST_PROJECT": PROJECT},
        "spark": {**base, "FEAST_PROJECT": f"{PROJECT}_lake", "OHLCV_ENGINE": "spark",
                  "OHLCV_LAKE": str(folder / "lake"), "SPARK_MASTER": os.environ.get("SPARK_MASTER", "local[2]")},
    }  # fmt: skip


def run(quick: bool) -> list[Result]:
    symbols, days = (20, 300) if quick else (500, 2520)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        universe = write_universe(folder / "universe.csv.gz", symbols, days)
        profiles = _profiles(folder)
        scratch_database(DATABASE, create=True)
        try:
            seconds, fingerprints = {}, {}
            for profile, env in profiles.items():
                for step in (("ingest", str(universe.path)), ("compute-features",), ("feast", "apply")):
                    _training(env, *step)
                out = folder / f"dataset-{profile}"
                seconds[profile] = _training(env, "build-dataset", "--out", str(out))
                metadata = json.loads((out / "metadata.json").read_text())
                fingerprints[profile] = (metadata["fingerprint"], metadata["rows"])
        finally:
            scratch_database(DATABASE, create=False)
    if fingerprints["spark"] != fingerprints["postgres"]:
        raise AssertionError(f"the Spark dataset differs from the one-box dataset: {fingerprints}")
    return [
        Result(
            benchmark="spark dataset",
            size=f"{symbols} x {days} bars -> {fingerprints['spark'][1]:,} samples",
            subject="build-dataset on OHLCV_ENGINE=spark (local[2])",
            subject_seconds=seconds["spark"],
            reference="build-dataset (one box, PostgreSQL)",
            reference_seconds=seconds["postgres"],
            target="same fingerprint; ratio reported",
            notes=f"fingerprints equal ({fingerprints['spark'][0][:12]}); one fresh process each, JVM start included",
        )
    ]
