"""Warm-up: every feature is finite, and no sample sits before its symbol's derived warm-up bar.

A NaN or inf feature means an indicator was read inside its lookback (or divided by zero); a sample at
bar index < the warm-up of its symbol's history was kept although some indicator was not yet defined
there. The warm-up is measured by the audit's own TA-Lib calls (the first bar at which every indicator is
finite, :func:`training.leakage.ref_indicators.measured_warmup`), never read from the dataset or the
builder, so a dataset stamped with a shorter warm-up fails too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.leakage.panel import BarHistory, ns
from training.leakage.ref_indicators import measured_warmup
from training.leakage.result import CheckResult

NAME = "warmup"


def check_warmup(dataset: Dataset, bars: BarHistory) -> CheckResult:
    frame, features = dataset.frame, dataset.features
    warmup = measured_warmup()
    values = frame[features].to_numpy(dtype=np.float64)
    nonfinite = ~np.isfinite(values)
    symbols = frame["symbol"].to_numpy()
    before = bars.count_before(symbols, ns(frame["event_timestamp"]), inclusive=False)
    early = before < warmup
    bad = nonfinite.any(axis=1) | early
    names = np.array(features)
    offending = pd.DataFrame(
        {
            "symbol": symbols[bad],
            "event_timestamp": frame["event_timestamp"].to_numpy()[bad],
            "bars_before": before[bad],
            "nonfinite_features": [", ".join(names[row]) for row in nonfinite[bad]],
            "problem": np.where(early[bad], f"fewer than {warmup} bars of history", "non-finite feature"),
        }
    )
    offending["event_timestamp"] = pd.to_datetime(offending["event_timestamp"], utc=True)
    stamped = dataset.metadata.get("warmup_bars")
    message = f"metadata says warm-up {stamped} bars, TA-Lib's outputs need {warmup}" if stamped != warmup else ""
    counts = {
        "rows": len(frame),
        "warmup_bars": warmup,
        "nonfinite_values": int(nonfinite.sum()),
        "rows_before_warmup": int(early.sum()),
        "fewest_bars_before": int(before.min()) if len(before) else None,
    }
    return CheckResult.verdict(
        NAME,
        f"{len(frame):,} rows x {len(features)} features finite; each sample has >= {warmup} earlier bars",
        counts,
        offending,
        message,
    )
