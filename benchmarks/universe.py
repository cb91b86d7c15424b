"""A seeded synthetic universe of daily bars, written to disk in chunks of whole symbols.

The scale benchmark needs files of 5M-25M bars in the bundled file's layout (Ticker, Date, Open, High,
Low, Close, Volume, Adj Close). Generating and writing one block of symbols at a time keeps this process
small (about ``chunk_bars`` x 100 bytes), so its own memory never competes with the steps it measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

COLUMNS = ("Ticker", "Date", "Open", "High", "Low", "Close", "Volume", "Adj Close")
FIRST_DAY = "2000-01-03"  # 5,000 business days end in 2019: never in the future, which ingest refuses
FORMATS = ("csv.gz", "parquet")


@dataclass(frozen=True)
class Universe:
    path: Path
    symbols: int
    days: int
    seed: int
    seconds: float = 0.0

    @property
    def bars(self) -> int:
        return self.symbols * self.days

    def describe(self) -> str:
        size_mb = self.path.stat().st_size / 1e6
        days = f"{self.days:,} business days"
        return f"{self.path.name}: {self.symbols:,} symbols x {days}, seed {self.seed}, {size_mb:,.1f} MB on disk"


def business_days(days: int) -> pa.Array:
    """``days`` consecutive Monday-Friday dates from FIRST_DAY, as YYYY-MM-DD strings (the file's own text)."""
    first = np.datetime64(FIRST_DAY, "D")
    return pa.array(np.datetime_as_string(np.busday_offset(first, np.arange(days), roll="forward"), unit="D"))


def symbol_block(seed: int, first: int, count: int, dates: pa.Array) -> pa.Table:
    """Geometric random walks for ``count`` symbols, OHLC consistent: low <= open, close <= high, volume > 0.

    Each symbol draws from its own generator (seed, symbol number), so the data do not depend on the chunk
    size. Rounding to 4 decimals and the 0.01 floor are monotone, so they keep that ordering.
    """
    days = len(dates)
    draws = [np.random.default_rng([seed, first + i]) for i in range(count)]
    start, sigma = (np.array([[rng.uniform(*bounds)] for rng in draws]) for bounds in ((10.0, 500.0), (0.01, 0.03)))
    noise = np.stack([rng.standard_normal((4, days)) for rng in draws], axis=1)  # (4, count, days)
    close = start * np.exp(np.cumsum(0.0002 + sigma * noise[0], axis=1))
    open_ = np.concatenate([start, close[:, :-1]], axis=1) * np.exp(sigma / 4 * noise[1])
    high = np.maximum(open_, close) * np.exp(np.abs(sigma / 2 * noise[2]))
    low = np.minimum(open_, close) * np.exp(-np.abs(sigma / 2 * noise[3]))
    volume = np.maximum(np.stack([rng.lognormal(13.0, 1.0, days) for rng in draws]).ravel(), 1).astype(np.int64)
    prices = [np.maximum(np.round(p, 4), 0.01).ravel() for p in (open_, high, low, close)]
    tickers = pa.array([f"S{first + i:05d}" for i in range(count)]).take(np.repeat(np.arange(count), days))
    columns = [tickers, dates.take(np.tile(np.arange(days), count)), *prices, volume, prices[3]]
    return pa.table(dict(zip(COLUMNS, columns, strict=True)))


def write_universe(
    path: Path, symbols: int, days: int, seed: int = 12, chunk_bars: int = 1_000_000, fmt: str = "csv.gz"
) -> Universe:
    """Write the universe to ``path`` (gzipped CSV or Parquet), one block of whole symbols at a time."""
    import gzip
    import time

    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    started = time.perf_counter()
    dates = business_days(days)
    per_block = max(1, chunk_bars // days)
    path.parent.mkdir(parents=True, exist_ok=True)
    # gzip level 1: level 6 costs 6x the time for 10% less disk, and ingest's read time barely differs.
    sink = None if fmt == "parquet" else gzip.open(path, "wb", compresslevel=1)  # noqa: SIM115 (closed below)
    writer = None
    try:
        for first in range(0, symbols, per_block):
            table = symbol_block(seed, first, min(per_block, symbols - first), dates)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema) if sink is None else pa_csv.CSVWriter(sink, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
    return Universe(path, symbols, days, seed, time.perf_counter() - started)


def main() -> None:
    """``python -m benchmarks.universe PATH SYMBOLS DAYS SEED FORMAT``: write it, print what was written as JSON.

    The scale benchmark runs this in its own process: a child's peak RSS starts at its launcher's, so the
    launcher must never hold a block of the universe itself.
    """
    import json
    import sys

    path, symbols, days, seed, fmt = sys.argv[1:6]
    universe = write_universe(Path(path), int(symbols), int(days), seed=int(seed), fmt=fmt)
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"describe": universe.describe(), "seconds": universe.seconds, "peak_mb": peak_kb / 1024}))


if __name__ == "__main__":
    main()
