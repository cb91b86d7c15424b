"""Build the training set: entity rows, point-in-time features, triple-barrier labels, weights, hold-out split.

Order matters for leakage-freedom, so each step only sees what it may:
1. entity rows are the bar closes of the requested symbols and dates (decisions);
2. Feast joins each decision to the newest feature row at or before it (never a later bar);
3. labels read only bars D+1..D+h; decisions without a full horizon are dropped;
4. the warm-up (derived from the indicator table) and any non-finite feature drop a row, never a guess;
5. weights are computed within the rows they serve (training rows never see validation). Nothing is fitted
   here: the trainer fits its preprocessing inside each fold, where ``verify-leakage --run`` audits it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from training.config import Config
from training.contract import COMPUTE_FEATURES
from training.dataset import artifact
from training.dataset.historical_features import describe_service, point_in_time_features
from training.dataset.offline_bars import decision_mask, load_bars
from training.errors import InputError
from training.indicators.definitions import warmup_bars
from training.labeling.sample_weights import weight_components
from training.labeling.triple_barrier import triple_barrier_labels
from training.validation.holdout_split import holdout_split

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def _bar_index(bars: pd.DataFrame) -> pd.Series:
    """Position of each bar within its symbol's history (0 = first bar)."""
    return bars.groupby("symbol", sort=False).cumcount()


def _check_history(bars: pd.DataFrame, explicit: bool, horizon: int, warmup: int) -> pd.DataFrame:
    """Symbols too short for warm-up + horizon: an error when asked for by name, else left out (logged)."""
    needed = warmup + horizon + 1
    counts = bars.groupby("symbol").size()
    short = counts[counts < needed]
    if len(short) and (explicit or len(short) == len(counts)):
        detail = ", ".join(f"{s} has {n}" for s, n in short.items())
        raise InputError(
            f"too little history: {detail} bars; the warm-up ({warmup} bars) and the label horizon "
            f"({horizon} bars) need at least {needed} bars per symbol"
        )
    if len(short):
        log.warning("left out (fewer than %d bars): %s", needed, ", ".join(short.index))
    return bars[~bars["symbol"].isin(short.index)].reset_index(drop=True)


def _target(rows: pd.DataFrame, config: Config) -> pd.Series:
    """Binary: did the upper barrier come first (label == +1)? Multiclass: the label itself."""
    return (rows["label"] == 1).astype(np.int8) if config["target"] == "binary" else rows["label"].astype(np.int8)


def _check_classes(target: pd.Series, what: str) -> list[int]:
    classes = sorted(int(c) for c in target.unique())
    if len(classes) < 2:
        raise InputError(
            f"the {len(target)} {what} hold a single class ({classes[0] if classes else 'none'}); "
            "widen the barriers, the horizon or the date range"
        )
    return classes


def _weights(samples: pd.DataFrame, bars: pd.DataFrame, options: dict[str, Any], roles: np.ndarray) -> pd.DataFrame:
    """Weight components computed separately for training and validation rows (class shares, concurrency)."""
    parts = []
    for role in ("train", "validation"):
        rows = samples[roles == role]
        if len(rows):
            parts.append(weight_components(rows, bars, options, classes=rows["target"]))
    columns = pd.concat(parts).reindex(samples.index)
    columns["weight"] = columns["weight"].fillna(0.0)  # purged and embargoed rows never train or score
    return columns.rename(columns={c: f"w_{c}" for c in columns.columns if c != "weight"})


def build_dataset(
    config: Config,
    store: Any,
    symbols: list[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    progress: Progress = log.info,
) -> artifact.Dataset:
    """The whole build in memory; :func:`training.dataset.artifact.save` writes it."""
    started = time.perf_counter()
    labels_config, horizon = config["labels"], int(config["labels"]["horizon"])
    warmup = warmup_bars()

    bars = load_bars(symbols)
    bars = _check_history(bars, explicit=symbols is not None, horizon=horizon, warmup=warmup)
    decisions = decision_mask(bars, start, end) & (_bar_index(bars) >= warmup)
    progress(f"{len(bars):,} bars of {bars['symbol'].nunique()} symbols; warm-up {warmup} bars")

    labels = triple_barrier_labels(bars, labels_config).rename(columns={"t0": "event_timestamp"})
    # Return from D's close to D+1's close: the first bar of the label window, used by the daily backtest.
    bars["next_ret"] = bars.groupby("symbol", sort=False)["close"].shift(-1) / bars["close"] - 1.0
    candidates = bars.loc[decisions, ["symbol", "event_timestamp", "next_ret"]].merge(
        labels, on=["symbol", "event_timestamp"]
    )
    del labels
    if candidates.empty:
        raise InputError(
            f"no decision in range has a full label horizon of {horizon} bars after the {warmup}-bar warm-up; "
            "widen the date range"
        )
    _check_classes(_target(candidates, config), "labelled decisions")
    service = describe_service(store, config["features"]["feature_service"])
    progress(f"{len(candidates):,} labelled decisions; joining {len(service.features)} features point-in-time")

    features = point_in_time_features(store, candidates, service)
    finite = np.isfinite(features[service.features].to_numpy(dtype=np.float64)).all(axis=1)
    nonfinite = int((~finite).sum())
    if not finite.any():
        raise InputError(f"every decision has a missing feature: run `{COMPUTE_FEATURES}`")
    # One reordering copy of each part (rows in time order, symbols within a date), not a merge and a sort.
    keep = np.flatnonzero(finite)
    order = keep[np.lexsort((candidates["symbol"].to_numpy()[keep], candidates["event_timestamp"].to_numpy()[keep]))]
    samples = candidates.take(order).reset_index(drop=True)
    features = features.take(order).reset_index(drop=True)
    del candidates
    samples["target"] = _target(samples, config)
    classes = _check_classes(samples["target"], "samples")

    # The embargo counts bars of the samples' own calendar (distinct t0 and t1), as cross-validation does.
    split = holdout_split(samples["event_timestamp"], samples["t1"], **config["split"])
    samples["split"] = split.role
    windows = samples[["symbol", "event_timestamp", "t1", "label", "target"]].rename(columns={"event_timestamp": "t0"})
    weights = _weights(windows, bars, config["weights"], split.role)
    progress(f"split {split.counts()}; weights {', '.join(c for c in weights.columns)}")

    del bars
    samples["feature_timestamp"] = features["feature_timestamp"]
    samples["weight"] = weights.pop("weight")
    ordered = [*artifact.ID_COLUMNS, *artifact.LABEL_COLUMNS, "upper", "lower"]
    columns = {c: samples.pop(c) for c in ordered} | dict(weights.items()) | dict(features[service.features].items())
    del samples, features, weights
    frame = pd.DataFrame(columns, copy=False)
    del columns
    metadata = {
        "format_version": artifact.FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint": artifact.fingerprint(frame, config, service.features),
        "feature_service": service.name,
        "features": service.features,
        "feature_ttl_seconds": service.ttl_seconds,
        "warmup_bars": warmup,
        "target": {"kind": config["target"], "classes": classes, "positive": "label == +1"},
        "rows": len(frame),
        "rows_by_split": split.counts(),
        "rows_dropped_nonfinite": nonfinite,
        "symbols": sorted(frame["symbol"].unique().tolist()),
        "period": {
            "first_t0": frame["event_timestamp"].min().isoformat(),
            "last_t0": frame["event_timestamp"].max().isoformat(),
        },
        "request": {"symbols": symbols, "start": str(start) if start else None, "end": str(end) if end else None},
        "split": split.summary(),
        "label_distribution": {str(k): int(v) for k, v in frame["label"].value_counts().sort_index().items()},
        "config": config,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    return artifact.Dataset(frame=frame, metadata=metadata)
