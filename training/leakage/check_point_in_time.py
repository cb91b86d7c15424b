"""Point-in-time join: each row's features come from the newest bar at or before its decision, within the TTL.

``feature_timestamp`` is the joined feature row's own bar time (carried through Feast as ``bar_timestamp``).
A later bar is look-ahead; an older bar (one skipped) means the join missed data it was entitled to, which
hides a broken join and makes training differ from serving; a bar older than the TTL should not have
joined at all. A dataset joined by decision time may skip a bar whose features were not usable yet; there the
decision_time check judges which version joined.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.leakage.check_decision_time import settings as decision_settings
from training.leakage.panel import MISSING, BarHistory, ns
from training.leakage.result import CheckResult
from training.leakage.stream import Bars, Offending, add_counts, run_one

NAME = "point_in_time"


class PointInTimeScan:
    name = NAME
    columns = ("symbol", "event_timestamp", "feature_timestamp")

    def __init__(self, dataset: Dataset) -> None:
        self.ttl = dataset.metadata.get("feature_ttl_seconds")
        # Joined by decision time, a row takes an older bar when the newest one's features were not usable yet:
        # the decision_time check judges the version instead of "newest bar".
        self.by_decision_time, _ = decision_settings(dataset)
        self.offending = Offending()
        self.counts = {"rows": 0, "missing": 0, "after_decision": 0, "older_than_ttl": 0, "not_newest_bar": 0}
        self.lag_max: int | None = None

    def add(self, frame: pd.DataFrame, bars: BarHistory) -> None:
        ttl = self.ttl
        symbols = frame["symbol"].to_numpy()
        decided, joined = ns(frame["event_timestamp"]), ns(frame["feature_timestamp"])
        newest = bars.newest_at_or_before(symbols, decided)

        missing = joined == MISSING
        after = ~missing & (joined > decided)
        stale = ~missing & ~after & (ttl is not None) & ((decided - joined) > int(float(ttl or 0) * 1e9))
        skipped = ~missing & ~after & (joined != newest) & (not self.by_decision_time)
        problems = np.select(
            [missing, after, stale, skipped],
            [
                "no feature timestamp",
                "joined bar is after the decision",
                "joined bar is older than the TTL",
                "not the newest bar at or before the decision",
            ],
            "",
        )
        bad = problems != ""
        picked = frame.iloc[np.flatnonzero(bad)]
        offending = pd.DataFrame(
            {
                "symbol": symbols[bad],
                "event_timestamp": picked["event_timestamp"].to_numpy(),
                "feature_timestamp": picked["feature_timestamp"].to_numpy(),
                "newest_bar": pd.to_datetime(np.where(newest[bad] == MISSING, np.nan, newest[bad]), utc=True),
                "problem": problems[bad],
            }
        )
        offending["event_timestamp"] = pd.to_datetime(offending["event_timestamp"], utc=True)
        offending["feature_timestamp"] = pd.to_datetime(offending["feature_timestamp"], utc=True)
        self.offending.add(offending)
        add_counts(self.counts, {"rows": len(frame), "missing": missing.sum(), "after_decision": after.sum(),
                                 "older_than_ttl": stale.sum(), "not_newest_bar": skipped.sum()})  # fmt: skip
        if (~missing).any():
            lag = int((decided - joined)[~missing].max())
            self.lag_max = lag if self.lag_max is None else max(self.lag_max, lag)

    def result(self) -> CheckResult:
        c, ttl = self.counts, self.ttl
        counts = {
            "rows": c["rows"],
            "ttl_seconds": ttl,
            "missing": c["missing"],
            "after_decision": c["after_decision"],
            "older_than_ttl": c["older_than_ttl"],
            "not_newest_bar": c["not_newest_bar"],
            "lag_max_seconds": float(self.lag_max / 1e9) if self.lag_max is not None else None,
        }
        ttl_text = f"{float(ttl) / 86400:g} days" if ttl is not None else "no TTL"
        return CheckResult.verdict(
            NAME,
            f"{c['rows']:,} rows: feature bar <= decision, within the TTL ({ttl_text}), newest bar at or before it",
            counts,
            self.offending.table(),
            total=self.offending.total,
        )


def check_point_in_time(dataset: Dataset, bars: Bars) -> CheckResult:
    return run_one(dataset, bars, PointInTimeScan(dataset))
