"""Sample weights of triple-barrier samples (Lopez de Prado, AFML ch. 4), each switchable.

Overlapping label windows share information, so a sample whose window (t0, t1] overlaps many others of
the same symbol should weigh less (uniqueness), samples are further weighted by the absolute return they
can claim uniquely (return attribution), by recency (time decay) and by inverse class frequency (class
balance). Concurrency is counted per symbol over bars: the window of a sample is its bars D+1 … t1.

Everything is computed from per-bar cumulative sums over bar-index ranges; no loop over samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from training.errors import InputError
from training.labeling.triple_barrier import BarPanel, bar_panel

COMPONENTS = ("uniqueness", "return_attribution", "time_decay", "class_balance")


@dataclass(frozen=True)
class LabelWindows:
    """Each sample's window as sorted-bar positions ``start`` (bar D+1) … ``end`` (bar t1), inclusive."""

    panel: BarPanel
    start: np.ndarray
    end: np.ndarray
    concurrency: np.ndarray  # per sorted bar: number of windows covering it

    @property
    def length(self) -> np.ndarray:
        return self.end - self.start + 1


def _positions(panel: BarPanel, codes: np.ndarray, stamps: np.ndarray, what: str) -> np.ndarray:
    """Sorted-bar position of each (symbol code, timestamp); every pair must be an existing bar."""
    distinct = np.unique(panel.ts)
    rank = np.searchsorted(distinct, stamps)
    exists = (rank < len(distinct)) & (distinct[np.minimum(rank, len(distinct) - 1)] == stamps)
    bar_keys = panel.codes * len(distinct) + np.searchsorted(distinct, panel.ts)
    keys = codes * len(distinct) + rank
    position = np.minimum(np.searchsorted(bar_keys, keys), len(bar_keys) - 1)
    exists &= bar_keys[position] == keys
    if not exists.all():
        first = int(np.flatnonzero(~exists)[0])
        raise InputError(
            f"{int((~exists).sum())} samples have a {what} that is not a bar of their symbol, first: sample {first}"
        )
    return position


def label_windows(labels: pd.DataFrame, bars: pd.DataFrame) -> LabelWindows:
    """Map the samples' (symbol, t0, t1) onto the bars and count each bar's concurrency."""
    missing = [c for c in ("symbol", "t0", "t1") if c not in labels.columns]
    if missing:
        raise InputError(f"labels lack column(s) {', '.join(missing)}")
    panel = bar_panel(bars)
    codes = pd.Categorical(labels["symbol"], categories=panel.symbols).codes.astype(np.int64)
    if (codes < 0).any():
        raise InputError(f"{int((codes < 0).sum())} samples have a symbol that has no bars")
    for column in ("t0", "t1"):
        if labels[column].dtype != bars["event_timestamp"].dtype:
            raise InputError(
                f"labels.{column} is {labels[column].dtype} but bar timestamps are {bars['event_timestamp'].dtype}"
            )
    start = _positions(panel, codes, pd.DatetimeIndex(labels["t0"]).asi8, "t0") + 1
    end = _positions(panel, codes, pd.DatetimeIndex(labels["t1"]).asi8, "t1")
    if (end < start).any():
        raise InputError(f"{int((end < start).sum())} samples have t1 <= t0")
    n = len(panel.codes)
    concurrency = np.cumsum(np.bincount(start, minlength=n + 1) - np.bincount(end + 1, minlength=n + 1))[:n]
    return LabelWindows(panel=panel, start=start, end=end, concurrency=concurrency)


def _window_sums(per_bar: np.ndarray, windows: LabelWindows) -> np.ndarray:
    cumulative = np.r_[0.0, np.cumsum(per_bar)]
    return cumulative[windows.end + 1] - cumulative[windows.start]


def _inverse_concurrency(windows: LabelWindows) -> np.ndarray:
    c = windows.concurrency
    return np.divide(1.0, c, out=np.zeros(len(c)), where=c > 0)


def average_uniqueness(windows: LabelWindows) -> np.ndarray:
    """Mean over the window's bars of 1 / concurrency: 1 for a sample overlapping no other."""
    return _window_sums(_inverse_concurrency(windows), windows) / windows.length


def return_attribution(windows: LabelWindows, close: np.ndarray) -> np.ndarray:
    """|sum over the window of log bar return / concurrency| (AFML 4.10); ``close`` in sorted-bar order."""
    log_return = np.zeros(len(close))
    log_return[1:] = np.diff(np.log(close))
    log_return[windows.panel.group_start == np.arange(len(close))] = 0.0  # never inside a window anyway
    return np.abs(_window_sums(log_return * _inverse_concurrency(windows), windows))


def time_decay(t0: Any, uniqueness: np.ndarray, oldest: float) -> np.ndarray:
    """Piecewise-linear decay on cumulative uniqueness (AFML 4.11): newest date 1, oldest about ``oldest``.

    All samples of a date share one weight (the cumulative uniqueness up to and including that date), so
    the order of symbols within a date never matters.
    """
    if not 0 < oldest <= 1:
        raise InputError(f"weights.time_decay must be in (0, 1], got {oldest}")
    if oldest == 1:
        return np.ones(len(uniqueness))
    dates, inverse = np.unique(pd.DatetimeIndex(t0).asi8, return_inverse=True)
    cumulative = np.cumsum(np.bincount(inverse, weights=uniqueness, minlength=len(dates)))
    return oldest + (1.0 - oldest) * cumulative[inverse] / cumulative[-1]


def class_balance(classes: Any) -> np.ndarray:
    """Inverse class frequency, n / (n_classes * count(class)): every class carries the same total weight."""
    values, inverse, counts = np.unique(np.asarray(classes), return_inverse=True, return_counts=True)
    return len(inverse) / (len(values) * counts[inverse])


def weight_components(
    labels: pd.DataFrame, bars: pd.DataFrame, weights: Mapping[str, Any], classes: Any = None
) -> pd.DataFrame:
    """Each enabled component and their product ``weight`` (mean 1), one row per sample of ``labels``.

    ``labels`` has symbol, t0, t1 (and label); ``bars`` the symbol, event_timestamp, close the labels came
    from; ``weights`` is ``config["weights"]``; ``classes`` are the targets to balance (default: labels.label).
    Concurrency counts the samples given, so pass the samples that will be trained on.
    """
    unknown = sorted(set(weights) - set(COMPONENTS))
    if unknown:
        raise InputError(f"unknown weight options {unknown}; known: {', '.join(COMPONENTS)}")
    out = pd.DataFrame(index=labels.index)
    if len(labels) == 0:
        out["weight"] = np.empty(0)
        return out
    decay = float(weights.get("time_decay", 1.0))
    if weights.get("uniqueness") or weights.get("return_attribution") or decay != 1.0:
        windows = label_windows(labels, bars)
        uniqueness = average_uniqueness(windows)
        if weights.get("uniqueness"):
            out["uniqueness"] = uniqueness
        if weights.get("return_attribution"):
            out["return_attribution"] = return_attribution(windows, windows.panel.values(bars["close"]))
        if decay != 1.0:
            out["time_decay"] = time_decay(labels["t0"], uniqueness, decay)
    if weights.get("class_balance"):
        if classes is None and "label" not in labels.columns:
            raise InputError("class balance needs a label column or the classes to balance")
        out["class_balance"] = class_balance(labels["label"] if classes is None else classes)
    product = out.prod(axis=1).to_numpy() if out.shape[1] else np.ones(len(labels))
    total = product.sum()
    if not (np.isfinite(total) and total > 0):
        raise InputError("every sample weight is zero (e.g. return attribution on flat prices); disable a component")
    out["weight"] = product * (len(product) / total)
    return out


def sample_weights(
    labels: pd.DataFrame, bars: pd.DataFrame, weights: Mapping[str, Any], classes: Any = None
) -> np.ndarray:
    """The product of the enabled weights, normalised to mean 1 (see :func:`weight_components`)."""
    return weight_components(labels, bars, weights, classes)["weight"].to_numpy()
