"""The audit's own triple-barrier reference: one plain loop per decision, read straight from the SPEC.

Entry = close of bar D; upper = entry (1 + pt s), lower = entry (1 - sl s), s = 1 or the EWM standard
deviation of daily returns up to D (pandas ``ewm(span).std()``, ``min_periods=span``); walk bars D+1 ... D+h
of the same symbol, the first touch decides (a bar touching both counts as the lower barrier), else the
vertical barrier at D+h gives 0 (or the sign of the return). No full horizon: no label. Slow (a Python
loop over every bar) and shares no code with ``training.labeling``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

DEFAULTS = {"profit_taking": 0.02, "stop_loss": 0.02, "horizon": 5, "barriers": "fixed", "volatility_span": 20,
            "touch": "high_low", "vertical_label": "zero"}  # fmt: skip


def label_symbol(ts: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                 labels: Mapping[str, Any]) -> list[dict[str, Any]]:  # fmt: skip
    """One dict per decision bar of one symbol (bars oldest first) that has a full horizon."""
    p = {**DEFAULTS, **labels}
    h = int(p["horizon"])
    if p["touch"] == "close":
        high = low = close
    sigma = np.ones(len(close))
    if p["barriers"] == "volatility":
        returns = pd.Series(close).pct_change()
        sigma = returns.ewm(span=int(p["volatility_span"]), min_periods=int(p["volatility_span"])).std().to_numpy()
    out = []
    for d in range(len(close) - h):
        s = sigma[d]
        if not (np.isfinite(s) and s > 0):
            continue
        entry = close[d]
        upper, lower = entry * (1 + p["profit_taking"] * s), entry * (1 - p["stop_loss"] * s)
        end, label, barrier = d + h, 0, "vertical"
        for k in range(d + 1, d + h + 1):
            if low[k] <= lower:
                end, label, barrier = k, -1, "lower"
                break
            if high[k] >= upper:
                end, label, barrier = k, 1, "upper"
                break
        ret = close[end] / entry - 1
        if barrier == "vertical" and p["vertical_label"] == "sign":
            label = int(np.sign(ret))
        out.append({"t0": ts[d], "t1": ts[end], "label": label, "barrier": barrier, "ret": ret, "upper": upper,
                    "lower": lower, "next_ret": close[d + 1] / entry - 1})  # fmt: skip
    return out
