"""Cross-validation: every fold the trainer uses (or a run used) is disjoint, purged and embargoed.

The folds are positions into the dataset's training rows sorted by (event_timestamp, symbol), as the
trainer arranges them. They come from outside this module: the configured splitter run the trainer's
way (:mod:`training.leakage.audited_code`, the code under audit), or the splits a training run recorded
(``verify-leakage --run``). Each is verified with the audit's own rules (:mod:`training.leakage.ref_splits`):
no training row is scored, no training label window [t0, t1] overlaps a test block's [min t0, max t1],
and no training row starts within the embargo after a test block's max t1, counted on the dataset's
bar calendar.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.leakage.panel import calendar, ns
from training.leakage.ref_splits import embargo_bars, fold_violations
from training.leakage.result import CheckResult

NAME = "cv"
Folds = Iterable[tuple[np.ndarray, np.ndarray]]  # read once, in order: a generator keeps one fold in memory


COLUMNS = ("symbol", "event_timestamp", "t1", "split")  # all the folds depend on


def read_fold_columns(dataset: Dataset, columns: Sequence[str] = ()) -> pd.DataFrame:
    """:data:`COLUMNS` (and ``columns``) of every row, symbol and split as Categoricals: 19 bytes a row, not 32."""
    return dataset.read(list(dict.fromkeys([*COLUMNS, *columns])), categorical=("symbol", "split"))


def training_order(frame: pd.DataFrame) -> np.ndarray:
    """Positions in ``frame`` (:data:`COLUMNS` at least) of the training rows, sorted by (event_timestamp, symbol):
    the order the trainer cross-validates them in."""
    train = np.flatnonzero((frame["split"] == "train").to_numpy())
    # Codes in str order, from the column's own codes when it is a Categorical (no object array of 25M rows).
    symbols = pd.factorize(pd.Series(frame["symbol"].array.take(train), copy=False), sort=True)[0]
    return train[np.lexsort((symbols, ns(frame["event_timestamp"])[train]))]  # a stable (time, symbol) sort


def training_rows(
    dataset: Dataset, columns: Sequence[str] = COLUMNS, frame: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The rows the trainer cross-validates, in its order (``columns`` of them; ``frame``: those already read)."""
    frame = read_fold_columns(dataset, columns) if frame is None else frame
    order = training_order(frame)
    # Only the columns asked for, a column at a time: no sorted copy of the whole frame.
    return pd.DataFrame({c: frame[c].array.take(order) for c in dict.fromkeys(columns)}, copy=False)


def check_cv(
    dataset: Dataset, cv: Mapping[str, Any], folds: Folds, splitter: str = "", frame: pd.DataFrame | None = None
) -> CheckResult:
    """``frame``: the dataset's :data:`COLUMNS`, when the caller read them already."""
    frame = read_fold_columns(dataset) if frame is None else frame
    rows = training_rows(dataset, ["symbol", "event_timestamp", "t1"], frame=frame)
    t0, t1 = ns(rows["event_timestamp"]), ns(rows["t1"])
    bars_of = calendar(frame)
    embargo = float(cv["embargo"])
    n_embargo = embargo_bars(embargo, len(bars_of))
    per_fold, offending, problems = [], [], []
    for index, (train, test) in enumerate(folds):
        train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
        per_fold.append({"fold": index, "train": len(train), "test": len(test),
                         "dropped": len(rows) - len(train) - len(test)})  # fmt: skip
        if len(test) == 0:
            problems.append(f"fold {index}: empty test set")
            continue
        for invariant, bad in fold_violations(t0, t1, train, test, n_embargo, bars_of).items():
            if len(bad):
                problems.append(f"fold {index}: {invariant} ({len(bad)} training rows)")
                part = rows.iloc[bad][["symbol", "event_timestamp", "t1"]]
                offending.append(part.assign(fold=index, problem=invariant))
    table = pd.concat(offending, ignore_index=True) if offending else pd.DataFrame()
    counts = {
        "method": cv.get("method"),
        "splitter": splitter,
        "training_rows": len(rows),
        "folds": len(per_fold),
        "failing_folds": len({p.split(":")[0] for p in problems}),
        "embargo": embargo,
        "embargo_bars": n_embargo,
        "calendar_bars": len(bars_of),
        "per_fold": per_fold,
    }
    description = (
        f"{len(per_fold)} folds of {splitter or cv.get('method')} over {len(rows):,} training rows: "
        f"no training label overlaps a test block, embargo {n_embargo} bars ({embargo:g} of {len(bars_of)}) after each"
    )
    if not per_fold:
        problems.append("the splitter yielded no folds")
    message = f"{counts['failing_folds']} of {len(per_fold)} folds leak: {', '.join(problems)}" if problems else ""
    return CheckResult.verdict(NAME, description, counts, table, message)
