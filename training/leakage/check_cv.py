"""Cross-validation: every fold of the configured splitter is purged and embargoed.

The training rows are arranged exactly as :func:`training.model.trainer.train` arranges them (sorted by
(event_timestamp, symbol), ``t1`` a Series indexed by t0, no ``bar_times``), the splitter is made the same
way, and each (train, test) split must pass
:func:`training.validation.split_invariants.check_split`. The splitter factory
is a parameter so a test can hand in a leaky one (e.g. sklearn's ``KFold``) and watch this check fail; the
event times reach ``split`` only if the splitter requests them (scikit-learn's metadata requests), as
``cross_validate`` would route them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.metadata_routing import get_routing_for_object

from training.dataset.artifact import Dataset
from training.leakage.result import CheckResult
from training.validation import split_invariants
from training.validation.purged_cv import make_cv

NAME = "cv"
SplitterFactory = Callable[[Mapping[str, Any]], Any]


def split_metadata(splitter: Any, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``metadata`` that ``splitter.split`` requests (none for a plain ``KFold``)."""
    return {name: metadata[name] for name in get_routing_for_object(splitter).consumes("split", list(metadata))}


def training_rows(dataset: Dataset) -> pd.DataFrame:
    """The rows the trainer cross-validates, in its order."""
    rows = dataset.rows("train")
    return rows.sort_values(["event_timestamp", "symbol"], kind="stable").reset_index(drop=True)


def check_cv(dataset: Dataset, cv: Mapping[str, Any], make_splitter: SplitterFactory = make_cv) -> CheckResult:
    rows = training_rows(dataset)
    t0, t1 = rows["event_timestamp"], rows["t1"]
    splitter = make_splitter(cv)
    metadata = split_metadata(splitter, {"t1": pd.Series(t1.to_numpy(), index=t0)})
    embargo = float(cv["embargo"])
    folds, offending, problems = [], [], []
    for index, (train, test) in enumerate(splitter.split(rows[dataset.features], **metadata)):
        train, test = np.asarray(train), np.asarray(test)
        fold = {"fold": index, "train": len(train), "test": len(test), "dropped": len(rows) - len(train) - len(test)}
        folds.append(fold)
        try:
            split_invariants.check_split(t0, t1, train, test, embargo)
        except split_invariants.LeakageError as error:
            problems.append(f"fold {index}: {error.invariant} ({len(error.rows)} training rows)")
            bad = rows.iloc[error.rows][["symbol", "event_timestamp", "t1"]]
            offending.append(bad.assign(fold=index, problem=error.invariant))
    table = pd.concat(offending, ignore_index=True) if offending else pd.DataFrame()
    counts = {
        "method": cv.get("method"),
        "splitter": type(splitter).__name__,
        "training_rows": len(rows),
        "folds": len(folds),
        "failing_folds": len(problems),
        "embargo": embargo,
        "per_fold": folds,
    }
    description = (
        f"{len(folds)} folds of {type(splitter).__name__} over {len(rows):,} training rows: "
        f"no training label overlaps a test block, embargo {embargo:g} after each"
    )
    if not folds:
        problems.append("the splitter yielded no folds")
    message = f"{len(problems)} of {len(folds)} folds leak: {', '.join(problems)}" if problems else ""
    return CheckResult.verdict(NAME, description, counts, table, message)
