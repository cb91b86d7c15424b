"""Features: recompute every feature of every row from the OHLCV bars up to its joined bar, and compare.

For a row joined to bar B (its ``feature_timestamp``), the indicators are the audit's own direct TA-Lib calls
(:mod:`training.leakage.ref_indicators`, not the project's indicator engine or its scale-free code) on the
symbol's adjusted bars, read at B. TA-Lib is causal (the value at B is, bit for bit, the value on the bars
cut at B: a tested property), so one pass over each symbol's history gives every row's reference, and
equality proves each stored value is a function of bars <= B only, without trusting that the indicator code
is causal. Every row is compared, a symbol partition at a time: a look-ahead in a single row shows. That B
itself is not after the decision (and is the newest bar at or before it) is the point-in-time check's job;
the two together prove no feature saw a bar after its decision.

A decision-time dataset (``features.decision_time``) joins the feature version known at ``t - lag``, computed
from the bars known then: a row whose bars up to B changed after that (a correction ingested before the build)
is recomputed from the bars as known at its decision (:func:`training.leakage.bars.read_changes` says which rows,
:func:`training.leakage.bars.read_bars_at` reads them, once per knowledge epoch), every other row from the build's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.indicators.definitions import INDICATORS, REFERENCE_COLUMNS
from training.leakage.bars import read_bars_at, read_changes
from training.leakage.check_decision_time import settings
from training.leakage.panel import RTOL, BarHistory, by_symbol, mismatch, ns, relative_error
from training.leakage.ref_indicators import values_at_every_bar, values_at_last_bar
from training.leakage.result import REPORTED_ROWS, CheckResult
from training.leakage.stream import Bars, Offending, add_counts, run_one

NAME = "features"
ChangeReader = Callable[[Sequence[str], str | None], pd.DataFrame]  # read_changes
EarlierBars = Callable[[Sequence[str], str], pd.DataFrame]  # read_bars_at
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

    def __init__(
        self, dataset: Dataset, changes: ChangeReader = read_changes, bars_at: EarlierBars = read_bars_at
    ) -> None:
        self.features = dataset.features
        enabled, lag = settings(dataset)
        self.decision_lag = lag if enabled else None  # ns; None: event time, every row against the build's bars
        self.known_at = dataset.metadata.get("known_at")
        self.changes, self.bars_at = changes, bars_at
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
        stored = frame[features].to_numpy(dtype=np.float64)
        missing_bar = np.zeros(len(frame), dtype=bool)
        bad = np.zeros(stored.shape, dtype=bool)
        expected = np.full_like(stored, np.nan)  # filled only for the rows reported
        grouped = by_symbol(symbols)
        for symbol, positions in grouped:
            self._compare(bars, symbol, positions, joined, stored, missing_bar, bad, expected)
        if self.decision_lag is not None:  # rows whose bars changed after their decision: the bars known then
            for when, group in self._earlier(frame, joined).items():
                earlier = BarHistory.of(self.bars_at(sorted(group), when))
                for symbol, positions in group.items():
                    self._compare(earlier, symbol, positions, joined, stored, missing_bar, bad, expected)
        self._report(frame, stored, expected, bad, missing_bar)
        add_counts(self.counts, {
            "symbols": len(grouped),
            "values_compared": stored.size - missing_bar.sum() * len(features),
            "mismatched_values": bad.sum(),
            "mismatched_rows": (missing_bar | bad.any(axis=1)).sum(),
        })  # fmt: skip

    def _compare(self, bars: BarHistory, symbol: str, positions: np.ndarray, joined: np.ndarray, stored: np.ndarray,
                 missing_bar: np.ndarray, bad: np.ndarray, expected: np.ndarray) -> None:  # fmt: skip
        """The rows at ``positions`` (one symbol's) recomputed from ``bars``, their verdicts written in place."""
        start, end = bars.span(symbol)
        at = np.searchsorted(bars.ts[start:end], joined[positions], side="right") - 1  # the joined bar's index
        missing = at < 0
        found = ~missing
        missing[found] = bars.ts[start:end][at[found]] != joined[positions[found]]
        missing_bar[positions] = missing
        bad[positions] = False
        if missing.all():
            return
        series = values_at_every_bar({c: bars.bars[c].to_numpy(dtype=np.float64)[start:end] for c in BAR_COLUMNS})
        found, rows = at[~missing], positions[~missing]
        reference = np.column_stack([series[name][found] for name in self.features])
        wrong = mismatch(reference, stored[rows])
        bad[rows] = wrong
        flagged = wrong.any(axis=1)
        expected[rows[flagged]] = reference[flagged]

    def _earlier(self, frame: pd.DataFrame, joined: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """The rows whose bars up to the joined one changed between their knowledge time K (decision - lag) and
        the build, by symbol and by an epoch (ISO 8601) whose bars up to the joined one are those known at K:
        just before the first change after K that touched them. Most rows have none (their bars are the
        build's), and the rows decided before one correction share one epoch, its eve: one read each."""
        symbols = frame["symbol"].astype(str).to_numpy()
        knew = ns(frame["event_timestamp"]) - self.decision_lag
        changes = self.changes(sorted(set(symbols)), self.known_at)
        epochs: dict[str, dict[str, np.ndarray]] = {}
        for symbol, positions in by_symbol(symbols):
            mine = changes[changes["symbol"] == symbol]
            changed, first = mine["changed"].to_numpy(np.int64), mine["first"].to_numpy(np.int64)
            later = np.minimum.accumulate(np.r_[first, np.iinfo(np.int64).max][::-1])[::-1]  # min first from i on
            after = np.searchsorted(changed, knew[positions], side="right")  # the first change after K
            stale = later[after] <= joined[positions]  # a change after K touched a bar up to the joined one
            eve = np.empty(int(stale.sum()), dtype=np.int64)
            for k, (i, through) in enumerate(zip(after[stale], joined[positions][stale], strict=True)):
                eve[k] = changed[i + np.flatnonzero(first[i:] <= through)[0]] - 1000  # 1 us before (stored in us)
            for when in np.unique(eve):
                key = pd.Timestamp(int(when), unit="ns", tz="UTC").isoformat()
                epochs.setdefault(key, {})[symbol] = positions[stale][eve == when]
        return epochs

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
