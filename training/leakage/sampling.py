"""Which rows the (expensive) feature recomputation looks at: a seeded sample stratified over symbols.

Each symbol's first and last rows are always in: the first sits right after the warm-up, where a wrong
lookback shows, and the last is where a join most easily reaches past the data. The rest of the budget
is shared in proportion to each symbol's rows (:func:`allocate`, from the row count of every symbol), then
drawn per symbol with its own generator, seeded by the seed and the symbol's name (:func:`sample_rows`):
which rows of a symbol are checked depends on the seed, the sample size and the symbols' row counts, never
on how the dataset is split into parts, so a partitioned audit checks the same rows as a one-part audit,
and two audits of the same dataset check the same rows.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

from training.leakage.panel import by_symbol

DEFAULT_SAMPLE = 300


def allocate(counts: Mapping[str, int], size: int = DEFAULT_SAMPLE) -> dict[str, int]:
    """Rows to sample per symbol (its first and last included) out of ``counts`` (rows per symbol)."""
    if size < 1:
        raise ValueError(f"the sample size must be at least 1, got {size}")
    symbols = sorted(counts)
    total = sum(int(counts[s]) for s in symbols)
    if size >= total:
        return {s: int(counts[s]) for s in symbols}
    ends = np.array([min(2, int(counts[s])) for s in symbols], dtype=np.int64)
    rests = np.array([int(counts[s]) for s in symbols], dtype=np.int64) - ends
    budget = max(0, size - int(ends.sum()))
    shares = np.array([budget * int(counts[s]) / total for s in symbols])
    takes = np.minimum(np.floor(shares).astype(np.int64), rests)
    for k in np.argsort(-(shares - np.floor(shares)), kind="stable"):  # largest remainders get the leftovers
        if takes.sum() >= budget:
            break
        takes[k] += int(takes[k] < rests[k])
    return {s: int(ends[k] + takes[k]) for k, s in enumerate(symbols)}


def _generator(seed: int, symbol: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(symbol.encode())])


def sample_rows(frame: pd.DataFrame, plan: Mapping[str, int], seed: int = 0) -> np.ndarray:
    """Sorted positions in ``frame`` (whole symbols; symbol, event_timestamp) of each symbol's ``plan`` rows:
    its first and last by time, and the rest drawn from the others with the symbol's own generator."""
    stamps = pd.DatetimeIndex(frame["event_timestamp"]).asi8
    chosen: list[np.ndarray] = []
    for symbol, rows in by_symbol(frame["symbol"].astype(str).to_numpy()):
        by_time = rows[np.argsort(stamps[rows], kind="stable")]
        wanted = int(plan.get(symbol, 0))
        if wanted >= len(by_time):
            chosen.append(by_time)
            continue
        inner = by_time[1:-1]
        drawn = _generator(seed, symbol).choice(len(inner), size=max(0, wanted - 2), replace=False)
        chosen.append(np.concatenate([by_time[[0, -1]], inner[np.sort(drawn)]]))
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)


def stratified_sample(frame: pd.DataFrame, size: int = DEFAULT_SAMPLE, seed: int = 0) -> np.ndarray:
    """Sorted row positions of ``frame`` (symbol, event_timestamp): at least first and last per symbol."""
    counts = frame["symbol"].astype(str).value_counts().to_dict()
    return sample_rows(frame, allocate(counts, size), seed)
