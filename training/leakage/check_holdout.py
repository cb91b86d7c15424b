"""Hold-out split: training labels end before the cutoff and before validation, with the embargo in between.

Recomputed with the audit's own rules (:mod:`training.leakage.ref_splits`) from the rows' t0/t1 and split
roles: training rows start and end before the cutoff T the metadata records; validation starts no earlier
than the embargo's bar count after T, and after the last training label, on the dataset's bar calendar
(distinct t0 and t1 of all rows), with the embargo fraction of the dataset's configuration.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.leakage.panel import calendar, ns
from training.leakage.ref_splits import bars_after, embargo_bars
from training.leakage.result import CheckResult

NAME = "holdout"
ROLES = ("train", "purged", "embargo", "validation")
COLUMNS = ("symbol", "event_timestamp", "t1", "split")  # all this check reads of the rows


def rows_at(frame: pd.DataFrame, positions: np.ndarray, problem: str) -> pd.DataFrame:
    """The identifying columns of the given rows, with what is wrong with them."""
    rows = frame.iloc[np.asarray(positions, dtype=np.int64)][["symbol", "event_timestamp", "t1", "split"]]
    return rows.assign(problem=problem)


def check_holdout(dataset: Dataset, bars: object = None) -> CheckResult:
    frame, meta = dataset.read(COLUMNS), dataset.metadata
    embargo = float(meta["config"]["split"]["embargo"])
    cutoff = pd.Timestamp(meta["split"]["cutoff"])
    cut = int(ns(pd.Series([cutoff]))[0])
    roles = frame["split"].astype(str).to_numpy()
    train, validation = np.flatnonzero(roles == "train"), np.flatnonzero(roles == "validation")
    t0, t1 = ns(frame["event_timestamp"]), ns(frame["t1"])
    bars_of = calendar(frame)
    n_embargo = embargo_bars(embargo, len(bars_of))
    first_allowed = bars_after(bars_of, cut, n_embargo)  # T and the n - 1 bars after it are the embargo
    counts: dict = {f"{role}_rows": int((roles == role).sum()) for role in ROLES}
    counts.update({"cutoff": cutoff, "embargo_fraction": embargo, "embargo_bars": n_embargo,
                   "calendar_bars": len(bars_of)})  # fmt: skip
    description = (
        f"{len(train):,} training vs {len(validation):,} validation rows: labels end before the cutoff {cutoff}, "
        f"embargo of {n_embargo} bars ({embargo:g} of {len(bars_of)}) before validation"
    )
    problems: list[tuple[np.ndarray, str]] = []
    unknown = np.flatnonzero(~np.isin(roles, ROLES))
    problems.append((unknown, "unknown split role"))
    if len(train) == 0 or len(validation) == 0:
        return CheckResult.verdict(NAME, description, counts, message="empty split: no training or validation rows")
    problems.append((train[(t0[train] >= cut) | (t1[train] >= cut)], "training label reaches the cutoff"))
    early = validation[t0[validation] < first_allowed]
    problems.append((early, "validation starts inside the embargo after the cutoff"))
    last_train = int(t1[train].max())
    counts["last_training_t1"] = pd.Timestamp(last_train, tz="UTC")
    counts["first_validation_t0"] = pd.Timestamp(int(t0[validation].min()), tz="UTC")
    limit = bars_after(bars_of, last_train, n_embargo) if n_embargo else last_train
    late = validation[t0[validation] <= limit]
    problems.append((late, "validation starts inside the embargo after the last training label"))
    messages = [f"{len(rows)} rows: {problem}" for rows, problem in problems if len(rows)]
    stamped = meta["split"].get("embargo_bars")
    if stamped not in (None, n_embargo):
        messages.append(f"metadata says {stamped} embargo bars, the calendar gives {n_embargo}")
    found = [rows_at(frame, rows, problem) for rows, problem in problems if len(rows)]
    table = pd.concat(found) if found else pd.DataFrame()
    if len(table):
        table = table.drop_duplicates(["symbol", "event_timestamp"]).sort_values("event_timestamp", kind="stable")
    return CheckResult.verdict(NAME, description, counts, table, "; ".join(messages), total=len(table))
