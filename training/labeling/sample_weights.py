"""Sample weights of triple-barrier samples (Lopez de Prado, AFML ch. 4), each switchable.

Overlapping label windows share information, so a sample whose window (t0, t1] overlaps many others of
the same symbol should weigh less (uniqueness), samples are further weighted by the absolute return they
can claim uniquely (return attribution), by recency (time decay) and by inverse class frequency (class
balance). Concurrency is counted per symbol over bars: the window of a sample is its bars D+1 … t1.

Everything is vectorised over samples; the only loop runs over the steps of the longest window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
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
    """Sum of ``per_bar`` over each window, bar after bar from its first: a window's sum depends only on its
    own bars, so a partition of whole symbols gives the same sums as the whole panel (a difference of
    panel-wide cumulative sums would carry the rounding of every bar before it)."""
    total = np.zeros(len(windows.start))
    last = len(per_bar) - 1
    for step in range(int(windows.length.max()) if len(total) else 0):
        inside = step < windows.length
        total += np.where(inside, per_bar[np.minimum(windows.start + step, last)], 0.0)
    return total


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


def _check_decay(oldest: float) -> None:
    if not 0 < oldest <= 1:
        raise InputError(f"weights.time_decay must be in (0, 1], got {oldest}")


def class_balance(classes: Any) -> np.ndarray:
    """Inverse class frequency, n / (n_classes * count(class)): every class carries the same total weight."""
    values, inverse, counts = np.unique(np.asarray(classes), return_inverse=True, return_counts=True)
    return len(inverse) / (len(values) * counts[inverse])


class ExactSum:
    """The correctly rounded sum of floats added in batches (as ``math.fsum``), whatever the batching.

    Each float is an integer mantissa times a power of two; the mantissas are summed exactly per exponent in
    Python integers. A weight normalised by this sum is the same whether the samples came in one panel or
    in many partitions, which a floating-point running sum is not.
    """

    def __init__(self) -> None:
        self._by_exponent: dict[int, int] = {}
        self._finite = True

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        if not np.isfinite(values).all():
            self._finite = False
            return
        mantissa, exponent = np.frexp(values)
        whole = (mantissa * 2.0**53).astype(np.int64)  # exact: |mantissa| < 1 has 53 significant bits
        for e in np.unique(exponent).tolist():
            chosen = whole[exponent == e]
            total = (int((chosen >> 32).sum()) << 32) + int((chosen & 0xFFFFFFFF).sum())
            self._by_exponent[e] = self._by_exponent.get(e, 0) + total

    def value(self) -> float:
        if not self._finite:
            return float("nan")
        return float(sum((Fraction(m) * Fraction(2) ** (e - 53) for e, m in self._by_exponent.items()), Fraction(0)))


class WeightStream:
    """The weights of one set of samples (e.g. a dataset's training rows) computed partition by partition.

    Uniqueness and return attribution are per symbol, so each partition computes its own
    (:meth:`observe`); time decay (cumulative uniqueness per date), class balance (class counts) and the
    normalising total need every partition, so they are gathered as small per-date and per-class arrays.
    Feeding partitions of whole symbols in symbol order gives bit for bit what one call over all samples
    gives: the per-date sums accumulate in the same order and the total is exact.
    """

    def __init__(self, weights: Mapping[str, Any], dates: np.ndarray) -> None:
        unknown = sorted(set(weights) - set(COMPONENTS))
        if unknown:
            raise InputError(f"unknown weight options {unknown}; known: {', '.join(COMPONENTS)}")
        self.options = weights
        self.decay = float(weights.get("time_decay", 1.0))
        _check_decay(self.decay)
        self.dates = np.asarray(dates, dtype=np.int64)  # sorted distinct t0 (int64 ns) of every sample
        self.uniqueness_by_date = np.zeros(len(self.dates))
        self.class_counts: dict[Any, int] = {}
        self.total = ExactSum()

    @property
    def columns(self) -> list[str]:
        """The enabled components, in the order :meth:`components` returns them."""
        enabled = [c for c in ("uniqueness", "return_attribution") if self.options.get(c)]
        balance = ["class_balance"] if self.options.get("class_balance") else []
        return enabled + ["time_decay"] * (self.decay != 1.0) + balance

    @property
    def needs_windows(self) -> bool:
        return bool(self.options.get("uniqueness") or self.options.get("return_attribution") or self.decay != 1.0)

    def local(self, labels: pd.DataFrame, bars: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray | None]:
        """The per-symbol components of samples (in the order given), and their average uniqueness when time
        decay needs it; reads nothing global and changes nothing, so it runs wherever the symbol's bars are
        (a Spark executor included). ``bars`` are the bars the labels came from."""
        out = pd.DataFrame(index=labels.index)
        if not (len(labels) and self.needs_windows):
            return out, None
        windows = label_windows(labels, bars)
        uniqueness = average_uniqueness(windows)
        if self.options.get("uniqueness"):
            out["uniqueness"] = uniqueness
        if self.options.get("return_attribution"):
            out["return_attribution"] = return_attribution(windows, windows.panel.values(bars["close"]))
        return out, uniqueness if self.decay != 1.0 else None

    def gather(self, t0: Any, uniqueness: np.ndarray | None, classes: Any) -> None:
        """Add samples' share of the global quantities: uniqueness per date (time decay), class counts.

        Sums per date accumulate in the order the samples come (as bincount would), so callers feed
        partitions in symbol order and rows in (t0, symbol) order."""
        if uniqueness is not None:
            where = np.searchsorted(self.dates, pd.DatetimeIndex(t0).asi8)
            np.add.at(self.uniqueness_by_date, where, uniqueness)
        if self.options.get("class_balance"):
            values, counts = np.unique(np.asarray(classes), return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist(), strict=True):
                self.class_counts[value] = self.class_counts.get(value, 0) + count

    def observe(self, labels: pd.DataFrame, bars: pd.DataFrame, classes: Any = None) -> pd.DataFrame:
        """The per-symbol components of one partition's samples (:meth:`local`), gathering the partition's
        share of the global ones (:meth:`gather`)."""
        if self.options.get("class_balance") and classes is None and "label" not in labels.columns:
            raise InputError("class balance needs a label column or the classes to balance")
        out, uniqueness = self.local(labels, bars)
        self.gather(labels["t0"], uniqueness, labels.get("label") if classes is None else classes)
        return out

    def components(self, local: pd.DataFrame, t0: Any, classes: Any = None) -> pd.DataFrame:
        """Every enabled component of samples :meth:`observe` saw (its output, their t0 and classes)."""
        out = local.copy()
        if self.decay != 1.0:
            # Piecewise-linear decay on cumulative uniqueness (AFML 4.11): newest date 1, oldest about ``decay``.
            # All samples of a date share one weight, so the order of symbols within a date never matters.
            cumulative = np.cumsum(self.uniqueness_by_date)
            where = np.searchsorted(self.dates, pd.DatetimeIndex(t0).asi8)
            out["time_decay"] = self.decay + (1.0 - self.decay) * cumulative[where] / cumulative[-1]
        if self.options.get("class_balance"):
            n, k = sum(self.class_counts.values()), len(self.class_counts)
            counts = np.array([self.class_counts[c] for c in np.asarray(classes).tolist()], dtype=np.int64)
            out["class_balance"] = n / (k * counts)
        return out

    @staticmethod
    def product(components: pd.DataFrame) -> np.ndarray:
        return components.prod(axis=1).to_numpy() if components.shape[1] else np.ones(len(components))

    def normalise(self, product: np.ndarray, rows: int) -> np.ndarray:
        """``product`` scaled so that the weights of all ``rows`` samples (whose products were all added to
        :attr:`total`) average 1."""
        total = self.total.value()
        if not (np.isfinite(total) and total > 0):
            raise InputError(
                "every sample weight is zero (e.g. return attribution on flat prices); disable a component"
            )
        return product * (rows / total)


def weight_components(
    labels: pd.DataFrame, bars: pd.DataFrame, weights: Mapping[str, Any], classes: Any = None
) -> pd.DataFrame:
    """Each enabled component and their product ``weight`` (mean 1), one row per sample of ``labels``.

    ``labels`` has symbol, t0, t1 (and label); ``bars`` the symbol, event_timestamp, close the labels came
    from; ``weights`` is the weights section as a mapping; ``classes`` are the targets to balance (default:
    labels.label).
    Concurrency counts the samples given, so pass the samples that will be trained on. One partition of
    :class:`WeightStream`, so a universe weighted partition by partition gets the same numbers.
    """
    stream = WeightStream(weights, np.unique(pd.DatetimeIndex(labels["t0"]).asi8) if len(labels) else [])
    if len(labels) == 0:
        out = pd.DataFrame(index=labels.index)
        out["weight"] = np.empty(0)
        return out
    if classes is None and stream.options.get("class_balance"):
        classes = labels["label"] if "label" in labels.columns else None
    out = stream.components(stream.observe(labels, bars, classes), labels["t0"], classes)
    product = stream.product(out)
    stream.total.add(product)
    out["weight"] = stream.normalise(product, len(product))
    return out


def sample_weights(
    labels: pd.DataFrame, bars: pd.DataFrame, weights: Mapping[str, Any], classes: Any = None
) -> np.ndarray:
    """The product of the enabled weights, normalised to mean 1 (see :func:`weight_components`)."""
    return weight_components(labels, bars, weights, classes)["weight"].to_numpy()
