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
from training.leakage.stream import Bars, Offending, add_counts, run_one

NAME = "warmup"


class WarmupScan:
    name = NAME

    def __init__(self, dataset: Dataset) -> None:
        self.features = dataset.features
        self.columns = ["symbol", "event_timestamp", *self.features]
        self.stamped = dataset.metadata.get("warmup_bars")
        self.warmup = measured_warmup()
        self.offending = Offending()
        self.counts = {"rows": 0, "nonfinite_values": 0, "rows_before_warmup": 0}
        self.fewest: int | None = None

    def add(self, frame: pd.DataFrame, bars: BarHistory) -> None:
        warmup, features = self.warmup, self.features
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
                "event_timestamp": frame["event_timestamp"].iloc[np.flatnonzero(bad)].to_numpy(),
                "bars_before": before[bad],
                "nonfinite_features": [", ".join(names[row]) for row in nonfinite[bad]],
                "problem": np.where(early[bad], f"fewer than {warmup} bars of history", "non-finite feature"),
            }
        )
        offending["event_timestamp"] = pd.to_datetime(offending["event_timestamp"], utc=True)
        self.offending.add(offending)
        add_counts(self.counts, {"rows": len(frame), "nonfinite_values": nonfinite.sum(),
                                 "rows_before_warmup": early.sum()})  # fmt: skip
        if len(before):
            self.fewest = int(before.min()) if self.fewest is None else min(self.fewest, int(before.min()))

    def result(self) -> CheckResult:
        warmup, stamped = self.warmup, self.stamped
        message = f"metadata says warm-up {stamped} bars, TA-Lib's outputs need {warmup}" if stamped != warmup else ""
        counts = {
            "rows": self.counts["rows"],
            "warmup_bars": warmup,
            "nonfinite_values": self.counts["nonfinite_values"],
            "rows_before_warmup": self.counts["rows_before_warmup"],
            "fewest_bars_before": self.fewest,
        }
        return CheckResult.verdict(
            NAME,
            f"{counts['rows']:,} rows x {len(self.features)} features finite; each sample has >= {warmup} earlier bars",
            counts,
            self.offending.table(),
            message,
            total=self.offending.total,
        )


def check_warmup(dataset: Dataset, bars: Bars) -> CheckResult:
    return run_one(dataset, bars, WarmupScan(dataset))
