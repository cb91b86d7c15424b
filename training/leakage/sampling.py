"""Which rows the (expensive) feature recomputation looks at: a seeded sample stratified over symbols.

Each symbol's first and last rows are always in: the first sits right after the warm-up, where a wrong
lookback shows, and the last is where a join most easily reaches past the data. The rest of the budget
is shared in proportion to each symbol's rows, drawn with a fixed seed so two audits check the same rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_SAMPLE = 300


def stratified_sample(frame: pd.DataFrame, size: int = DEFAULT_SAMPLE, seed: int = 0) -> np.ndarray:
    """Sorted row positions of ``frame`` (symbol, event_timestamp): at least first and last per symbol."""
    if size < 1:
        raise ValueError(f"the sample size must be at least 1, got {size}")
    if size >= len(frame):
        return np.arange(len(frame))
    rng = np.random.default_rng(seed)
    stamps = frame["event_timestamp"].to_numpy()
    groups = {s: np.flatnonzero(frame["symbol"].to_numpy() == s) for s in sorted(frame["symbol"].unique())}
    chosen: list[np.ndarray] = []
    for rows in groups.values():
        by_time = rows[np.argsort(stamps[rows], kind="stable")]
        chosen.append(np.unique(by_time[[0, -1]]))
    budget = max(0, size - sum(len(c) for c in chosen))
    rests = [np.setdiff1d(rows, chosen[k]) for k, rows in enumerate(groups.values())]
    shares = np.array([budget * len(rows) / len(frame) for rows in groups.values()])
    takes = np.minimum(np.floor(shares).astype(int), [len(r) for r in rests])
    for k in np.argsort(-(shares - np.floor(shares)), kind="stable"):  # largest remainders get the leftovers
        if takes.sum() >= budget:
            break
        takes[k] += int(takes[k] < len(rests[k]))
    for k, rest in enumerate(rests):
        if takes[k]:
            chosen[k] = np.concatenate([chosen[k], rng.choice(rest, size=int(takes[k]), replace=False)])
    return np.sort(np.concatenate(chosen))
