"""The one module of the audit that runs the code under audit: to obtain its output, never to check it.

The checks recompute everything with the audit's own references (``ref_*`` modules) and import nothing
from the builder, labels, weights, splitters, indicator engine or Feast store; a test parses their
imports to keep it so. But an audit of the folds ``train`` will use needs those folds, and the rebuild
half of the reproducibility check needs a rebuild: both come from here, made exactly as the trainer and
the builder make them, and are then judged by code that shares nothing with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset

FOLD_COLUMNS = ("symbol", "event_timestamp", "t1", "split")


def fold_view(dataset: Dataset, frame: pd.DataFrame | None = None) -> Dataset:
    """The dataset with only the columns folds depend on (the rows' order, roles, t0 and t1; the features
    matrix is passed to the splitter only for its length), so the folds of millions of rows fit in memory.
    ``frame``: those columns already read."""
    rows = dataset.read(FOLD_COLUMNS) if frame is None else frame
    return Dataset(metadata={**dataset.metadata, "features": []}, frame=rows)


def configured_folds(
    dataset: Dataset, cv: Mapping[str, Any], frame: pd.DataFrame | None = None
) -> tuple[str, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """The splitter ``cv`` (config.cv dumped, or a run's record) makes and its folds, one at a time, run as
    ``train`` runs it (the same function)."""
    from training.model.trainer import iter_cv_splits

    splitter, folds = iter_cv_splits(fold_view(dataset, frame), cv)
    return type(splitter).__name__, folds


def splitter_folds(
    dataset: Dataset, splitter: Any, frame: pd.DataFrame | None = None
) -> tuple[str, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """Folds of any scikit-learn splitter over the training rows, event times routed only if it asks for
    them (as ``cross_validate`` would): how a test hands in a leaky splitter such as ``KFold``."""
    from sklearn.utils.metadata_routing import get_routing_for_object

    from training.model.trainer import bar_calendar, training_rows

    dataset = fold_view(dataset, frame)
    rows = training_rows(dataset)
    label_times = pd.Series(rows["t1"].to_numpy(), index=rows["event_timestamp"])
    offered = {"t1": label_times, "bar_times": bar_calendar(dataset)}
    wanted = get_routing_for_object(splitter).consumes("split", list(offered))
    folds = splitter.split(rows[dataset.features], **{k: offered[k] for k in wanted})
    return type(splitter).__name__, ((np.asarray(a), np.asarray(b)) for a, b in folds)


def rebuild(metadata: dict[str, Any], out: Path, progress: Callable[[str], None] = lambda message: None) -> Dataset:
    """Build the dataset again from its own configuration and request into ``out``, through Feast (imported
    here only), from the versions known at its build (corrections ingested since do not count against it)."""
    from training.config import default_config
    from training.engines import current_engine
    from training.feast_store.repository import feature_store

    request = metadata.get("request") or {}
    start, end = request.get("start"), request.get("end")
    known_at = metadata.get("known_at")
    return current_engine().build_dataset(
        default_config().with_sections(metadata["config"]),
        feature_store(),
        out,
        symbols=request.get("symbols"),
        start=date.fromisoformat(start) if start else None,
        end=date.fromisoformat(end) if end else None,
        progress=progress,
        known_at=datetime.fromisoformat(known_at) if known_at else None,
    )
