"""Hold-out split: training labels end before the cutoff and before validation, with the embargo in between.

Recomputed with :func:`training.validation.split_invariants.check_holdout` from the rows' own t0/t1 and
split roles, on the
bar calendar the builder used (every bar timestamp of the dataset's symbols), with the embargo fraction of
the dataset's configuration and the cutoff its metadata records.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.leakage.panel import BarHistory, ns
from training.leakage.result import CheckResult
from training.validation import split_invariants
from training.validation.holdout_split import ROLES

NAME = "holdout"


def rows_at(frame: pd.DataFrame, positions: np.ndarray, problem: str) -> pd.DataFrame:
    """The identifying columns of the given rows, with what is wrong with them."""
    rows = frame.iloc[np.asarray(positions, dtype=np.int64)][["symbol", "event_timestamp", "t1", "split"]]
    return rows.assign(problem=problem)


def check_holdout(dataset: Dataset, bars: BarHistory) -> CheckResult:
    frame, meta = dataset.frame, dataset.metadata
    embargo = float(meta["config"]["split"]["embargo"])
    cutoff = pd.Timestamp(meta["split"]["cutoff"])
    roles = frame["split"].astype(str).to_numpy()
    train, validation = np.flatnonzero(roles == "train"), np.flatnonzero(roles == "validation")
    t0, t1 = ns(frame["event_timestamp"]), ns(frame["t1"])
    calendar = np.unique(bars.ts)
    n_embargo = split_invariants.embargo_bars(embargo, len(calendar))
    counts: dict = {f"{role}_rows": int((roles == role).sum()) for role in ROLES}
    counts.update(
        {"cutoff": cutoff, "embargo_fraction": embargo, "embargo_bars": n_embargo, "calendar_bars": len(calendar)}
    )
    if len(train) and len(validation):
        last_train, first_valid = int(t1[train].max()), int(t0[validation].min())
        counts["last_training_t1"] = pd.Timestamp(last_train, tz="UTC")
        counts["first_validation_t0"] = pd.Timestamp(first_valid, tz="UTC")
        between = np.searchsorted(calendar, first_valid) - np.searchsorted(calendar, last_train, side="right")
        counts["bars_between"] = int(between)
    description = (
        f"{len(train):,} training vs {len(validation):,} validation rows: labels end before the cutoff {cutoff}, "
        f"embargo of {n_embargo} bars ({embargo:g} of {len(calendar)}) before validation"
    )
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        bad = np.flatnonzero(~np.isin(roles, ROLES))
        return CheckResult.verdict(
            NAME, description, counts, rows_at(frame, bad, "unknown split role"), f"unknown split roles {unknown}"
        )
    try:
        split_invariants.check_holdout(t0, t1, train, validation, embargo, cutoff, bars.bar_times)
    except split_invariants.LeakageError as error:
        offending = rows_at(frame, error.rows, error.invariant)
        message = str(error).split("; first: ")[0]  # the rows themselves are listed as offending rows
        return CheckResult.verdict(NAME, description, counts, offending, message, total=len(error.rows))
    return CheckResult.verdict(NAME, description, counts)
