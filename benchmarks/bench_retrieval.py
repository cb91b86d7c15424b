"""Point-in-time retrieval on PostgreSQL: the project's offline store vs the floor and Feast's stock store.

Subject: ``get_historical_features(...).to_df()`` through ``AsOfPostgreSQLOfflineStore`` for 23 indicators
(five family views on one source, plus the ``bar_timestamp`` audit column, TTL 7 days) and one entity
row per symbol and bar. Floor: a plain COPY of the same feature rows into pandas (the project's
``db.copy_out``: CSV parsed by Arrow's C++ reader, the fastest plain path measured) plus
``pandas.merge_asof`` by symbol with the TTL as tolerance.
Feast's stock store runs once at 250 k rows (about three minutes). Every measurement runs in its own
process, so its peak RSS is the retrieval's own (plus the interpreter and imports, reported apart);
rounds interleave subject and floor so a busy machine slows both alike. Each run also checks that the
subject's features equal the floor's (and the stock store's) bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmarks import retrieval_setup as setup
from benchmarks.common import Result, peak_rss_mb
from training.indicators.definitions import FEATURE_NAMES

CLASS_PATH = "training.feast_store.offline_store.AsOfPostgreSQLOfflineStore"
COLUMNS = [*FEATURE_NAMES, "bar_timestamp"]
TARGET = "≤ 2.0 at 1.26 M rows; peak ≤ 2 GB"


@dataclass
class Measurement:
    seconds: float
    peak_mb: float  # peak RSS of the measuring process
    before_mb: float  # RSS just before the timed call (interpreter, imports, entity frame)
    digest: str


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _digest(frame: pd.DataFrame) -> str:
    """Features in (symbol, event_timestamp) order, NaN-normalised: equal digests mean identical values."""
    ordered = frame.sort_values(["symbol", "event_timestamp"], kind="stable")
    digest = hashlib.sha256()
    for column in COLUMNS:
        series = ordered[column]
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            series = series.dt.tz_convert(None)
        if pd.api.types.is_datetime64_dtype(series.dtype):
            values = series.to_numpy("datetime64[us]").astype(np.int64).astype(np.float64)
            values[series.isna().to_numpy()] = np.nan
        else:
            values = series.to_numpy(np.float64)
        digest.update(np.isnan(values).tobytes())
        digest.update(np.where(np.isnan(values), 0.0, values).tobytes())
    return digest.hexdigest()


def _floor(symbols: int, bars: int) -> pd.DataFrame:
    """COPY the feature rows the entity range can use, then merge_asof by symbol (TTL as tolerance)."""
    from psycopg import sql

    from training.infra import db

    entity = setup.entity_frame(symbols, bars)
    low, high = entity["event_timestamp"].min() - setup.TTL, entity["event_timestamp"].max()
    query = sql.SQL(
        "SELECT symbol, event_timestamp, event_timestamp AS bar_timestamp, {} FROM {} "
        "WHERE event_timestamp BETWEEN %s AND %s"
    ).format(sql.SQL(", ").join(map(sql.Identifier, FEATURE_NAMES)), sql.Identifier(setup.panel_table(symbols, bars)))
    with db.connect(setup.DATABASE) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        features = db.copy_out(conn, query, (low, high), parse_dates=("event_timestamp", "bar_timestamp"))
    left = entity.sort_values("event_timestamp", kind="stable")
    right = features.sort_values("event_timestamp", kind="stable")
    return pd.merge_asof(
        left, right, on="event_timestamp", by="symbol", tolerance=pd.Timedelta(setup.TTL), direction="backward"
    )


def worker(kind: str, symbols: int, bars: int) -> Measurement:
    """One timed retrieval in this (fresh) process."""
    import gc

    if kind in ("store", "stock"):
        store_type = CLASS_PATH if kind == "store" else "postgres"
        store, service = setup.feature_store(store_type, symbols, bars)
        entity = setup.entity_frame(symbols, bars)

        def call() -> pd.DataFrame:
            return store.get_historical_features(entity_df=entity, features=service).to_df()
    else:

        def call() -> pd.DataFrame:
            return _floor(symbols, bars)

    gc.collect()
    before = _rss_mb()
    start = time.perf_counter()
    frame = call()
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    assert len(frame) == symbols * bars
    return Measurement(seconds, peak, before, _digest(frame))


def _measure(kind: str, symbols: int, bars: int) -> Measurement:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_retrieval", kind, str(symbols), str(bars)],
        check=True,
        capture_output=True,
        text=True,
    )
    return Measurement(**json.loads(out.stdout.strip().splitlines()[-1]))


def _best(rounds: list[Measurement]) -> Measurement:
    best = min(rounds, key=lambda m: m.seconds)
    return Measurement(best.seconds, max(m.peak_mb for m in rounds), best.before_mb, best.digest)


def run(quick: bool) -> list[Result]:
    sizes = [(20, 250)] if quick else [(100, 2500), (500, 2520)]
    stock_size = (20, 100) if quick else (100, 2500)  # the stock join grows with rows x bars per symbol
    repeat = 2 if quick else 3
    setup.create_database()
    results: list[Result] = []
    try:
        for symbols, bars in sorted({*sizes, stock_size}):
            setup.create_panel(symbols, bars)
        for symbols, bars in sizes:
            rounds: dict[str, list[Measurement]] = {"store": [], "floor": []}
            for _ in range(repeat):
                for kind, found in rounds.items():
                    found.append(_measure(kind, symbols, bars))
            best = {kind: _best(found) for kind, found in rounds.items()}
            results += _rows(symbols, bars, best)
        symbols, bars = stock_size
        store = _best([_measure("store", symbols, bars) for _ in range(repeat)])
        stock = _measure("stock", symbols, bars)
        size = f"{symbols} x {bars} = {symbols * bars:,} entity rows"
        same = "identical" if stock.digest == store.digest else "DIFFERENT"
        results.append(
            Result(
                "historical retrieval",
                size,
                "AsOf store",
                store.seconds,
                "Feast stock PostgreSQL store (once)",
                stock.seconds,
                "far below 1",
                f"features {same}; stock peak RSS {stock.peak_mb:,.0f} MB",
            )
        )
    finally:
        setup.drop_database()
    return results


def _rows(symbols: int, bars: int, best: dict[str, Measurement]) -> list[Result]:
    store = best["store"]
    size = f"{symbols} x {bars} = {symbols * bars:,} entity rows"
    memory = (
        f"store peak RSS {store.peak_mb:,.0f} MB ({store.peak_mb - store.before_mb:,.0f} MB over the "
        f"{store.before_mb:,.0f} MB before the call)"
    )
    floor = best["floor"]
    same = "identical" if floor.digest == store.digest else "DIFFERENT"
    notes = f"features {same}; {memory}; floor peak RSS {floor.peak_mb:,.0f} MB"
    label = "floor: COPY (Arrow CSV parse) + merge_asof"
    return [Result("historical retrieval", size, "AsOf store", store.seconds, label, floor.seconds, TARGET, notes)]


if __name__ == "__main__":
    kind, symbols, bars = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    measured = worker(kind, symbols, bars)
    print(json.dumps(measured.__dict__))
