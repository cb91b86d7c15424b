"""Bet sizes from predicted probabilities (AFML ch. 10): a bet's size grows with the model's confidence.

- :func:`size_from_probability` (AFML 10.1): ``z = (p - 1/k) / sqrt(p (1 - p))``, size ``2 Phi(z) - 1``;
  for a meta-label ``p`` is the probability that acting on the primary's side pays, a bet is only taken
  when ``p > 1/2`` and its sign is the primary's side.
- :func:`average_active` (AFML 10.2): a symbol's position at a bar is the mean size of its bets still open
  then (started at or before the bar, first barrier not yet touched), so overlapping bets do not stack.
- :func:`discretise` (AFML 10.3): sizes rounded to a step, so a tiny change of ``p`` does not trade.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm


def size_from_probability(p: np.ndarray, side: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """Signed size in [-1, 1] of bets on ``side`` taken with probability ``p`` that the side is right."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    z = (p - 1.0 / n_classes) / np.sqrt(p * (1.0 - p))
    act = p > 1.0 / n_classes  # the meta model's prediction: 1 (act) or 0 (pass, size 0)
    return np.asarray(side, dtype=np.float64) * act * (2.0 * norm.cdf(z) - 1.0)


def average_active(symbol: pd.Series | np.ndarray, t0: np.ndarray, t1: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Per row (a bet opened at its t0), the mean size of the same symbol's bets open at that t0: those with
    ``t0_j <= t0 < t1_j``. Counted with sorted cumulative sums, per symbol (no rows x rows matrix)."""
    t0, t1 = np.asarray(t0).astype(np.int64), np.asarray(t1).astype(np.int64)
    size = np.asarray(size, dtype=np.float64)
    out = np.empty(len(size))
    codes = pd.factorize(np.asarray(symbol))[0]
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        starts, ends = np.argsort(t0[rows], kind="stable"), np.argsort(t1[rows], kind="stable")
        opened = np.concatenate([[0.0], np.cumsum(size[rows][starts])])
        closed = np.concatenate([[0.0], np.cumsum(size[rows][ends])])
        at = t0[rows]
        n_opened = np.searchsorted(t0[rows][starts], at, side="right")  # bets with t0_j <= t0
        n_closed = np.searchsorted(t1[rows][ends], at, side="right")  # of those, bets with t1_j <= t0: closed
        count = n_opened - n_closed
        out[rows] = (opened[n_opened] - closed[n_closed]) / np.maximum(count, 1)
    return out


def discretise(size: np.ndarray, step: float) -> np.ndarray:
    """Sizes rounded to multiples of ``step`` in [-1, 1] (AFML 10.3)."""
    if not 0 < step <= 1:
        raise ValueError(f"the bet size step must be in (0, 1], got {step}")
    return np.clip(np.round(np.asarray(size, dtype=np.float64) / step) * step, -1.0, 1.0)
