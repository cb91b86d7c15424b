"""Features: recompute every feature of sampled rows from OHLCV cut at the joined bar, and compare.

For a row joined to bar B (its ``feature_timestamp``), the indicators are recomputed by the audit's own
direct TA-Lib calls (:mod:`training.leakage.ref_indicators`, not the project's indicator engine or its
scale-free code) on the symbol's adjusted bars up to and including B — nothing after B is given to
TA-Lib. Equality proves each stored value is a function of bars <= B only, without trusting that the
indicator code is causal. The rows are a seeded sample (:mod:`training.leakage.sampling`, 300 by default,
each symbol's first and last rows always in, drawn per symbol so that any partitioning of the dataset
checks the same rows): each recomputation runs TA-Lib over the whole history. That B itself is not after
the decision (and is the newest bar at or before it) is the point-in-time check's job; the two
together prove no feature saw a bar after its decision.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.indicators.definitions import INDICATORS, REFERENCE_COLUMNS
from training.leakage.panel import RTOL, BarHistory, by_symbol, mismatch, ns, relative_error
from training.leakage.ref_indicators import values_at_last_bar
from training.leakage.result import CheckResult
from training.leakage.sampling import DEFAULT_SAMPLE, allocate, sample_rows
from training.leakage.stream import Bars, Offending, add_counts, run_one, symbol_counts

NAME = "features"
# Columns a model must never see as inputs: they describe the future (labels) or the split.
NOT_FEATURES = frozenset({"t1", "label", "target", "ret", "next_ret", "barrier", "upper", "lower", "weight", "split"})


def known_features() -> set[str]:
    """Names this check can recompute: the 23 indicators, their model forms and the reference columns."""
    return {i.name for i in INDICATORS} | {i.model_feature for i in INDICATORS} | set(REFERENCE_COLUMNS)


def recompute(history: dict[str, np.ndarray], features: list[str]) -> dict[str, float]:
    """Every feature's value at the last bar of ``history`` (one symbol's adjusted bars, oldest first)."""
    values = values_at_last_bar(history)
    return {name: values[name] for name in features}


class FeatureScan:
    """The sampled rows of each partition recomputed; the sample is planned over every symbol's row count."""

    name = NAME

    def __init__(self, dataset: Dataset, sample: int = DEFAULT_SAMPLE, seed: int = 0,
                 counts: Mapping[str, int] | None = None) -> None:  # fmt: skip
        self.features = dataset.features
        self.columns = ["symbol", "event_timestamp", "feature_timestamp", *self.features]
        self.forbidden = sorted(f for f in self.features if f in NOT_FEATURES or f.startswith("w_"))
        self.unknown = sorted(set(self.features) - known_features() - set(self.forbidden))
        self.seed = seed
        self.plan = {} if self.forbidden or self.unknown else allocate(counts or symbol_counts(dataset), sample)
        self.offending = Offending()
        self.counts = {"sampled_rows": 0, "rows": 0, "symbols": 0, "values_compared": 0, "mismatched_values": 0,
                       "mismatched_rows": 0}  # fmt: skip

    def add(self, frame: pd.DataFrame, bars: BarHistory) -> None:
        self.counts["rows"] += len(frame)
        if self.forbidden or self.unknown:
            return
        features = self.features
        rows = frame.iloc[sample_rows(frame, self.plan, self.seed)]
        symbols = rows["symbol"].to_numpy()
        joined = ns(rows["feature_timestamp"])
        through = bars.count_before(symbols, joined, inclusive=True)  # bars up to and including the joined bar
        columns = ("open", "high", "low", "close", "volume")
        stored = rows[features].to_numpy(dtype=np.float64)
        expected = np.full_like(stored, np.nan)
        missing_bar = np.zeros(len(rows), dtype=bool)
        for symbol, positions in by_symbol(symbols):
            start, end = bars.span(symbol)
            arrays = {c: bars.bars[c].to_numpy(dtype=np.float64)[start:end] for c in columns}
            for i in positions:
                n = int(through[i])
                if n == 0 or bars.ts[start + n - 1] != joined[i]:
                    missing_bar[i] = True  # the joined bar is not a bar of this symbol
                    continue
                values = recompute({c: a[:n] for c, a in arrays.items()}, features)
                expected[i] = [values[name] for name in features]

        bad = mismatch(expected, stored) & ~missing_bar[:, None]
        offending = []
        for i in np.flatnonzero(missing_bar | bad.any(axis=1)):
            base = {
                "symbol": symbols[i],
                "event_timestamp": rows["event_timestamp"].iloc[i],
                "feature_timestamp": rows["feature_timestamp"].iloc[i],
            }
            if missing_bar[i]:
                offending.append({**base, "feature": None, "problem": "joined bar is not an OHLCV bar of the symbol"})
                continue
            for j in np.flatnonzero(bad[i]):
                offending.append(
                    {
                        **base,
                        "feature": features[j],
                        "dataset": stored[i, j],
                        "recomputed": expected[i, j],
                        "relative_error": float(relative_error(expected[i, j], stored[i, j])),
                    }
                )
        self.offending.add(pd.DataFrame(offending))
        add_counts(self.counts, {
            "sampled_rows": len(rows),
            "symbols": rows["symbol"].nunique(),
            "values_compared": stored.size - missing_bar.sum() * len(features),
            "mismatched_values": bad.sum(),
            "mismatched_rows": (missing_bar | bad.any(axis=1)).sum(),
        })  # fmt: skip

    def result(self) -> CheckResult:
        if self.forbidden or self.unknown:
            problems = [f"label or split columns among the features: {self.forbidden}"] if self.forbidden else []
            problems += [f"features this audit cannot recompute from OHLCV: {self.unknown}"] if self.unknown else []
            return CheckResult.verdict(NAME, "feature columns are indicators of bars", {}, message="; ".join(problems))
        counts = {**self.counts, "features": len(self.features)}
        counts = {k: counts[k] for k in ("sampled_rows", "rows", "symbols", "features", "values_compared",
                                         "mismatched_values", "mismatched_rows")}  # fmt: skip
        return CheckResult.verdict(
            NAME,
            f"{counts['sampled_rows']:,} sampled rows (first and last of each symbol included) x "
            f"{len(self.features)} features recomputed from OHLCV up to the joined bar (relative {RTOL:g})",
            counts,
            self.offending.table(),
            total=counts["mismatched_rows"],
        )


def check_features(dataset: Dataset, bars: Bars, sample: int = DEFAULT_SAMPLE, seed: int = 0) -> CheckResult:
    """Features of the sampled rows recomputed, a partition at a time."""
    return run_one(dataset, bars, FeatureScan(dataset, sample, seed))
