"""Features: recompute every feature of every row from the OHLCV bars up to its joined bar, and compare.

For a row joined to bar B (its ``feature_timestamp``), the indicators are the audit's own direct TA-Lib calls
(:mod:`training.leakage.ref_indicators`, not the project's indicator engine or its scale-free code) on the
symbol's adjusted bars, read at B. TA-Lib is causal (the value at B is, bit for bit, the value on the bars
cut at B: a tested property), so one pass over each symbol's history gives every row's reference, and
equality proves each stored value is a function of bars <= B only, without trusting that the indicator code
is causal. Every row is compared, a symbol partition at a time: a look-ahead in a single row shows. That B
itself is not after the decision (and is the newest bar at or before it) is the point-in-time check's job;
the two together prove no feature saw a bar after its decision.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.indicators.definitions import INDICATORS, REFERENCE_COLUMNS
from training.leakage.panel import RTOL, BarHistory, by_symbol, mismatch, ns, relative_error
from training.leakage.ref_indicators import values_at_every_bar, values_at_last_bar
from training.leakage.result import REPORTED_ROWS, CheckResult
from training.leakage.stream import Bars, Offending, add_counts, run_one

NAME = "features"
# Columns a model must never see as inputs: they describe the future (labels) or the split.
NOT_FEATURES = frozenset({"t1", "label", "target", "ret", "next_ret", "barrier", "upper", "lower", "weight", "split"})
BAR_COLUMNS = ("open", "high", "low", "close", "volume")


def known_features() -> set[str]:
    """Names this check can recompute: the 23 indicators, their model forms and the reference columns."""
    return {i.name for i in INDICATORS} | {i.model_feature for i in INDICATORS} | set(REFERENCE_COLUMNS)


def recompute(history: dict[str, np.ndarray], features: list[str]) -> dict[str, float]:
    """Every feature's value at the last bar of ``history`` (one symbol's adjusted bars, oldest first)."""
    values = values_at_last_bar(history)
    return {name: values[name] for name in features}


class FeatureScan:
    """Every row of each partition recomputed, a symbol at a time (memory: one symbol's reference series)."""

    name = NAME

    def __init__(self, dataset: Dataset) -> None:
        self.features = dataset.features
        self.columns = ["symbol", "event_timestamp", "feature_timestamp", *self.features]
        self.forbidden = sorted(f for f in self.features if f in NOT_FEATURES or f.startswith("w_"))
        self.unknown = sorted(set(self.features) - known_features() - set(self.forbidden))
        self.offending = Offending()
        self.counts = {"rows": 0, "symbols": 0, "values_compared": 0, "mismatched_values": 0, "mismatched_rows": 0}

    def add(self, frame: pd.DataFrame, bars: BarHistory) -> None:
        self.counts["rows"] += len(frame)
        if self.forbidden or self.unknown:
            return
        features = self.features
        symbols = frame["symbol"].to_numpy()
        joined = ns(frame["feature_timestamp"])
        through = bars.count_before(symbols, joined, inclusive=True)  # bars up to and including the joined bar
        stored = frame[features].to_numpy(dtype=np.float64)
        missing_bar = np.zeros(len(frame), dtype=bool)
        bad = np.zeros(stored.shape, dtype=bool)
        expected = np.full_like(stored, np.nan)  # filled only for the rows reported
        grouped = by_symbol(symbols)
        for symbol, positions in grouped:
            start, end = bars.span(symbol)
            at = through[positions] - 1  # the joined bar's index in the symbol's bars
            missing = at < 0
            found = ~missing
            missing[found] = bars.ts[start:end][at[found]] != joined[positions[found]]
            missing_bar[positions] = missing
            if missing.all():
                continue
            series = values_at_every_bar({c: bars.bars[c].to_numpy(dtype=np.float64)[start:end] for c in BAR_COLUMNS})
            found, rows = at[~missing], positions[~missing]
            reference = np.column_stack([series[name][found] for name in features])
            wrong = mismatch(reference, stored[rows])
            bad[rows] = wrong
            flagged = wrong.any(axis=1)
            expected[rows[flagged]] = reference[flagged]
        self._report(frame, stored, expected, bad, missing_bar)
        add_counts(self.counts, {
            "symbols": len(grouped),
            "values_compared": stored.size - missing_bar.sum() * len(features),
            "mismatched_values": bad.sum(),
            "mismatched_rows": (missing_bar | bad.any(axis=1)).sum(),
        })  # fmt: skip

    def _report(self, frame: pd.DataFrame, stored: np.ndarray, expected: np.ndarray, bad: np.ndarray,
                missing_bar: np.ndarray) -> None:  # fmt: skip
        """The partition's first offending rows in the report's order, a record per wrong value."""
        flagged = np.flatnonzero(missing_bar | bad.any(axis=1))
        if not len(flagged):
            return
        stamps = ns(frame["event_timestamp"])[flagged]
        names = frame["symbol"].astype(str).to_numpy()[flagged]
        first = flagged[np.lexsort((names, stamps))][:REPORTED_ROWS]
        offending = []
        for i in first:
            base = {
                "symbol": frame["symbol"].iloc[i],
                "event_timestamp": frame["event_timestamp"].iloc[i],
                "feature_timestamp": frame["feature_timestamp"].iloc[i],
            }
            if missing_bar[i]:
                offending.append({**base, "feature": None, "problem": "joined bar is not an OHLCV bar of the symbol"})
                continue
            for j in np.flatnonzero(bad[i]):
                offending.append({**base, "feature": self.features[j], "dataset": stored[i, j],
                                  "recomputed": expected[i, j],
                                  "relative_error": float(relative_error(expected[i, j], stored[i, j]))})  # fmt: skip
        self.offending.add(pd.DataFrame(offending), total=len(flagged))

    def result(self) -> CheckResult:
        if self.forbidden or self.unknown:
            problems = [f"label or split columns among the features: {self.forbidden}"] if self.forbidden else []
            problems += [f"features this audit cannot recompute from OHLCV: {self.unknown}"] if self.unknown else []
            return CheckResult.verdict(NAME, "feature columns are indicators of bars", {}, message="; ".join(problems))
        counts = {**self.counts, "features": len(self.features)}
        counts = {k: counts[k] for k in ("rows", "symbols", "features", "values_compared", "mismatched_values",
                                         "mismatched_rows")}  # fmt: skip
        return CheckResult.verdict(
            NAME,
            f"every row ({counts['rows']:,}) x {len(self.features)} features recomputed by TA-Lib from OHLCV up to "
            f"the joined bar (relative {RTOL:g})",
            counts,
            self.offending.table(),
            total=counts["mismatched_rows"],
        )


def check_features(dataset: Dataset, bars: Bars) -> CheckResult:
    """Features of every row recomputed, a partition at a time."""
    return run_one(dataset, bars, FeatureScan(dataset))
