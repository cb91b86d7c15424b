"""Build the training set: entity rows, point-in-time features, triple-barrier labels, weights, hold-out split.

Order matters for leakage-freedom, so each step only sees what it may:
1. entity rows are the bar closes of the requested symbols and dates (decisions);
2. Feast joins each decision to the newest feature row at or before it (never a later bar);
3. labels read only bars D+1..D+h; decisions without a full horizon are dropped;
4. the warm-up (derived from the indicator table) and any non-finite feature drop a row, never a guess;
5. weights are computed within the rows they serve (training rows never see validation). Nothing is fitted
   here: the trainer fits its preprocessing inside each fold, where ``verify-leakage --run`` audits it.

Memory holds one symbol partition (``OHLCV_PARTITION_BARS`` bars of whole symbols) at a time:
- pass 1, per partition: labels, the point-in-time join and the finite-feature filter, staged to disk;
  only the calendar (distinct decision dates and their sample counts, distinct t1) is kept;
- the hold-out split's boundaries come from that calendar;
- pass 2, per partition: roles, then the per-symbol weight components (uniqueness, return attribution),
  gathering the per-date and per-class sums that time decay and class balance need;
- pass 3 totals the weights (exactly), pass 4 writes each partition's part of the artifact.
Every global quantity is accumulated in the order one panel would have used, so any partition size
gives the same rows bit for bit.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from training.config import Config
from training.contract import COMPUTE_FEATURES
from training.dataset import artifact
from training.dataset.historical_features import ServiceFeatures, describe_service, point_in_time_features
from training.dataset.offline_bars import check_range, checked_symbols, decision_mask, no_bars_in_range, read_bars
from training.errors import InputError
from training.indicators.definitions import warmup_bars
from training.infra import db, versions
from training.infra.stage_times import stage
from training.labeling.sample_weights import WeightStream
from training.labeling.triple_barrier import triple_barrier_labels
from training.partitions import Partition, bar_counts, plan_partitions
from training.validation.holdout_split import (
    HoldoutBoundaries,
    check_label_order,
    holdout_boundaries,
    split_summary,
    timestamp_of,
)
from training.validation.split_invariants import bar_calendar

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
ROLES_WEIGHTED = ("train", "validation")  # purged and embargoed rows never train or score: weight 0
STAGED_COLUMNS = ["symbol", "event_timestamp", "t1", "feature_timestamp", "label", "target", "ret", "next_ret",
                  "barrier", "upper", "lower"]  # fmt: skip


def _bar_index(bars: pd.DataFrame) -> pd.Series:
    """Position of each bar within its symbol's history (0 = first bar)."""
    return bars.groupby("symbol", sort=False).cumcount()


def check_history(counts: list[tuple[str, int]], explicit: bool, horizon: int, warmup: int) -> list[tuple[str, int]]:
    """Symbols too short for warm-up + horizon: an error when asked for by name, else left out (logged)."""
    needed = warmup + horizon + 1
    short = [(symbol, n) for symbol, n in counts if n < needed]
    if short and (explicit or len(short) == len(counts)):
        detail = ", ".join(f"{s} has {n}" for s, n in short)
        raise InputError(
            f"too little history: {detail} bars; the warm-up ({warmup} bars) and the label horizon "
            f"({horizon} bars) need at least {needed} bars per symbol"
        )
    if short:
        log.warning("left out (fewer than %d bars): %s", needed, ", ".join(s for s, _ in short))
    return [(symbol, n) for symbol, n in counts if n >= needed]


def target_of(rows: pd.DataFrame, config: Config) -> pd.Series:
    """Binary: did the upper barrier come first (label == +1)? Multiclass: the label itself."""
    return (rows["label"] == 1).astype(np.int8) if config.target == "binary" else rows["label"].astype(np.int8)


def _check_classes(classes: set[int], rows: int, what: str) -> list[int]:
    ordered = sorted(int(c) for c in classes)
    if len(ordered) < 2:
        raise InputError(
            f"the {rows} {what} hold a single class ({ordered[0] if ordered else 'none'}); "
            "widen the barriers, the horizon or the date range"
        )
    return ordered


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.union1d(a, b) if len(a) else np.unique(b)


@dataclass
class Calendar:
    """What pass 1 keeps of all partitions: small arrays and counts, never the rows."""

    dates: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # distinct t0 (ns)
    counts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # samples per date
    t1: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # distinct t1 (ns)
    any_decision: bool = False
    first_bar: date | None = None
    last_bar: date | None = None
    candidates: int = 0
    candidate_classes: set[int] = field(default_factory=set)
    classes: set[int] = field(default_factory=set)
    rows: int = 0
    nonfinite: int = 0
    staged: list[int] = field(default_factory=list)  # partitions with at least one sample
    tz: Any = None

    def add_bars(self, bars: pd.DataFrame, decisions: pd.Series) -> None:
        self.any_decision |= bool(decisions.any())
        first, last = bars["trade_date"].min(), bars["trade_date"].max()
        self.first_bar = first if self.first_bar is None else min(self.first_bar, first)
        self.last_bar = last if self.last_bar is None else max(self.last_bar, last)

    def add_samples(self, samples: pd.DataFrame) -> None:
        t0 = samples["event_timestamp"].array.asi8
        dates, counts = np.unique(t0, return_counts=True)
        merged = _union(self.dates, dates)
        total = np.zeros(len(merged), dtype=np.int64)
        total[np.searchsorted(merged, self.dates)] += self.counts
        total[np.searchsorted(merged, dates)] += counts
        self.dates, self.counts = merged, total
        self.t1 = _union(self.t1, np.unique(samples["t1"].array.asi8))
        self.rows += len(samples)
        self.classes |= set(samples["target"].unique().tolist())
        self.tz = samples["event_timestamp"].dt.tz


def _label_and_join(
    conn, store: Any, service: ServiceFeatures, partition: Partition, config: Config, request: dict[str, Any],
    calendar: Calendar,
) -> pd.DataFrame | None:  # fmt: skip
    """Pass 1 of one partition: its labelled decisions with finite point-in-time features, sorted by
    (event_timestamp, symbol); None when the partition has none."""
    labels_config, warmup = config.labels.model_dump(), request["warmup"]
    with stage("read"):
        bars = read_bars(conn, list(partition.symbols))
    with stage("labels"):
        decisions = decision_mask(bars, request["start"], request["end"]) & (_bar_index(bars) >= warmup)
        calendar.add_bars(bars, decisions)
        labels = triple_barrier_labels(bars, labels_config).rename(columns={"t0": "event_timestamp"})
        # Return from D's close to D+1's close: the first bar of the label window, used by the daily backtest.
        bars["next_ret"] = bars.groupby("symbol", sort=False)["close"].shift(-1) / bars["close"] - 1.0
        candidates = bars.loc[decisions, ["symbol", "event_timestamp", "next_ret"]].merge(
            labels, on=["symbol", "event_timestamp"]
        )
    del labels, bars
    if candidates.empty:
        return None
    calendar.candidates += len(candidates)
    calendar.candidate_classes |= set(target_of(candidates, config).unique().tolist())
    with stage("join"):
        features = point_in_time_features(store, candidates, service, config.features.decision_time)
    finite = np.isfinite(features[service.features].to_numpy(dtype=np.float64)).all(axis=1)
    calendar.nonfinite += int((~finite).sum())
    if not finite.any():
        return None
    # One reordering copy of each part (rows in time order, symbols within a date), not a merge and a sort.
    keep = np.flatnonzero(finite)
    order = keep[np.lexsort((candidates["symbol"].to_numpy()[keep], candidates["event_timestamp"].to_numpy()[keep]))]
    samples = candidates.take(order).reset_index(drop=True)
    features = features.take(order).reset_index(drop=True)
    del candidates
    samples["target"] = target_of(samples, config)
    check_label_order(samples["event_timestamp"].array.asi8, samples["t1"].array.asi8)
    samples["feature_timestamp"] = features["feature_timestamp"]
    staged = pd.concat([samples[STAGED_COLUMNS], features[service.features]], axis=1)
    calendar.add_samples(staged)
    return staged


def window_frame(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[["symbol", "event_timestamp", "t1", "label", "target"]].rename(columns={"event_timestamp": "t0"})


def roles_of(bounds: HoldoutBoundaries, rows: pd.DataFrame) -> np.ndarray:
    return bounds.roles(rows["event_timestamp"].array.asi8, rows["t1"].array.asi8)


def _local_weights(conn, writer: artifact.ArtifactWriter, partition: Partition, bounds: HoldoutBoundaries,
                   streams: dict[str, WeightStream]) -> np.ndarray:  # fmt: skip
    """Pass 2 of one partition: per-symbol weight components of its training and validation rows, staged;
    returns the rows' roles."""
    staged = pd.read_parquet(writer.stage_path(partition.index), columns=["symbol", "event_timestamp", "t1", "label",
                                                                          "target"])  # fmt: skip
    roles = roles_of(bounds, staged)
    with stage("read"):
        bars = read_bars(conn, list(partition.symbols)) if any(s.needs_windows for s in streams.values()) else None
    local = []
    for role, stream in streams.items():
        rows = window_frame(staged[roles == role])
        if len(rows):
            local.append(stream.observe(rows, bars, classes=rows["target"]))
    columns = pd.concat(local).reindex(staged.index) if local else pd.DataFrame(index=staged.index)
    columns.to_parquet(_local_path(writer, partition), index=False)
    return roles


def _local_path(writer: artifact.ArtifactWriter, partition: Partition) -> Path:
    return writer.stage_path(partition.index).with_name(f".stage-{partition.index:05d}-w.parquet")


def _weights(local: pd.DataFrame, roles: np.ndarray, streams: dict[str, WeightStream], staged: pd.DataFrame,
             rows: dict[str, int] | None) -> pd.DataFrame:  # fmt: skip
    """Every weight component and ``weight`` of one partition's rows (``local``: their per-symbol components);
    with ``rows`` None, only add their products to the streams' totals (pass 3)."""
    if local.shape[1] == 0:  # no per-symbol component enabled: Parquet kept no rows either
        local = pd.DataFrame(index=staged.index)
    out: list[pd.DataFrame] = []
    for role, stream in streams.items():
        mine = roles == role
        if not mine.any():
            continue
        components = stream.components(local[mine], staged["event_timestamp"][mine], staged["target"][mine])
        product = stream.product(components)
        if rows is None:
            stream.total.add(product)
            continue
        components["weight"] = stream.normalise(product, rows[role])
        out.append(components)
    if rows is None:
        return pd.DataFrame()
    names = [*next(iter(streams.values())).columns, "weight"]
    columns = pd.concat(out).reindex(staged.index) if out else pd.DataFrame(np.nan, index=staged.index, columns=names)
    columns["weight"] = columns["weight"].astype(np.float64).fillna(0.0)  # purged and embargoed rows: weight 0
    return columns.rename(columns={c: f"w_{c}" for c in columns.columns if c != "weight"})


def build_dataset(
    config: Config,
    store: Any,
    out: Path,
    symbols: list[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    progress: Progress = log.info,
    partition_bars: int | None = None,
    known_at: datetime | None = None,
) -> artifact.Dataset:
    """Build the dataset partition by partition into the artifact folder ``out`` (atomically); returns it.

    ``known_at``: read bars, adjustments and features as they were known then (:mod:`training.infra.versions`),
    which rebuilds a dataset built at that time row for row; None reads the newest and records the database's
    clock at the start as the build's knowledge time.
    """
    with db.connect() as conn:
        now = versions.database_now(conn)
    with knowledge_time(known_at, now, "the database's clock") as at:
        return _build(config, store, out, symbols, start, end, progress, partition_bars, at)


@contextmanager
def knowledge_time(known_at: datetime | None, now: datetime, clock: str) -> Iterator[datetime]:
    """The knowledge time a build records, the rule of both engines: ``now`` (``clock``, the one the store's
    writers stamp versions with) read at the build's start, the newest rows read; or ``known_at``, within which
    every reader reads the versions known then (:func:`training.infra.versions.knowing`). A time later than
    ``now`` is refused: what will be known then is not known yet."""
    if known_at is None:
        yield now
        return
    if known_at > now:
        raise InputError(f"--known-at {known_at.isoformat()} is later than {clock} ({now.isoformat()}): "
                         "what will be known then is not known yet")  # fmt: skip
    with versions.knowing(known_at):
        yield known_at


def _build(config: Config, store: Any, out: Path, symbols: list[str] | None, start: date | None, end: date | None,
           progress: Progress, partition_bars: int | None, known_at: datetime) -> artifact.Dataset:  # fmt: skip
    from tqdm import tqdm

    from training.infra.settings import partition_bars as default_budget

    started = time.perf_counter()
    horizon = config.labels.horizon
    warmup = warmup_bars()
    check_range(start, end)
    wanted = checked_symbols(symbols)
    with db.connect() as conn:
        counts = check_history(bar_counts(conn, wanted), explicit=symbols is not None, horizon=horizon, warmup=warmup)
    partitions = plan_partitions(counts, partition_bars or default_budget())
    with stage("feast store"):
        service = describe_service(store, config.features.feature_service)
    progress(
        f"{sum(n for _, n in counts):,} bars of {len(counts)} symbols in {len(partitions)} partition(s); "
        f"warm-up {warmup} bars; joining {len(service.features)} features point-in-time"
    )
    request = {"start": start, "end": end, "warmup": warmup, "horizon": horizon, "known_at": known_at}
    bar = {"unit": "partition", "disable": None, "leave": False}
    calendar = Calendar()
    with artifact.ArtifactWriter(out) as writer, db.connect() as conn:
        for partition in tqdm(partitions, desc="labels + features", **bar):
            staged = _label_and_join(conn, store, service, partition, config, request, calendar)
            if staged is not None:
                with stage("stage rows"):
                    staged.to_parquet(writer.stage_path(partition.index), index=False)
                calendar.staged.append(partition.index)
        bounds, streams = decide_split(calendar, config, request)
        staged_partitions = [p for p in partitions if p.index in calendar.staged]
        role_counts: Counter[str] = Counter()
        for partition in tqdm(staged_partitions, desc="weights", **bar):
            with stage("weights"):
                role_counts.update(_local_weights(conn, writer, partition, bounds, streams).tolist())
        request |= {"symbols": symbols, "partitions": len(partitions),
                    "bars_per_partition": partition_bars or default_budget()}  # fmt: skip
        summary = Summary(calendar, bounds, streams, role_counts)
        staged = _StagedFiles(writer)
        return finish(writer, staged, staged_partitions, summary, config, service, request, started, progress)


def decide_split(
    calendar: Calendar, config: Config, request: dict[str, Any]
) -> tuple[HoldoutBoundaries, dict[str, WeightStream]]:
    """After pass 1: refuse what no partition could answer, then the hold-out boundaries from the calendar and
    the weight streams of the roles that are weighted."""
    _check_pass_one(calendar, request["start"], request["end"], request["horizon"], request["warmup"])
    _check_classes(calendar.classes, calendar.rows, "samples")
    # The embargo counts bars of the samples' own calendar (distinct t0 and t1), as cross-validation does.
    bounds = holdout_boundaries(calendar.dates, calendar.counts, bar_calendar(calendar.dates, calendar.t1),
                                **config.split.model_dump())  # fmt: skip
    return bounds, {role: WeightStream(config.weights.model_dump(), calendar.dates) for role in ROLES_WEIGHTED}


def _check_pass_one(calendar: Calendar, start: date | None, end: date | None, horizon: int, warmup: int) -> None:
    """The refusals that need every partition: nothing in range, nothing labelled, one class, no finite row."""
    if not calendar.any_decision and calendar.first_bar is not None and (start or end):
        raise no_bars_in_range(start, end, calendar.first_bar, calendar.last_bar)
    if not calendar.candidates:
        raise InputError(
            f"no decision in range has a full label horizon of {horizon} bars after the {warmup}-bar warm-up; "
            "widen the date range"
        )
    _check_classes(calendar.candidate_classes, calendar.candidates, "labelled decisions")
    if not calendar.rows:
        raise InputError(f"every decision has a missing feature: run `{COMPUTE_FEATURES}`")


class StagedRows(Protocol):
    """Where passes 1 and 2 left each partition's rows: the builder's staging files, or a Spark lake table."""

    def samples(self, partition: Partition, columns: list[str] | None = None) -> pd.DataFrame:
        """The partition's samples (pass 1's columns), sorted by (event_timestamp, symbol)."""
        ...

    def local(self, partition: Partition) -> pd.DataFrame:
        """Their per-symbol weight components (pass 2), aligned with :meth:`samples`' rows."""
        ...


@dataclass
class _StagedFiles:
    writer: artifact.ArtifactWriter

    def samples(self, partition: Partition, columns: list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(self.writer.stage_path(partition.index), columns=columns)

    def local(self, partition: Partition) -> pd.DataFrame:
        return pd.read_parquet(_local_path(self.writer, partition))


@dataclass
class Summary:
    """What passes 1 and 2 decided for the whole dataset: the calendar, the split and the weights' global state."""

    calendar: Calendar
    bounds: HoldoutBoundaries
    streams: dict[str, WeightStream]
    role_counts: Counter[str]


def finish(writer: artifact.ArtifactWriter, staged: StagedRows, partitions: list[Partition], summary: Summary,
           config: Config, service: ServiceFeatures, request: dict[str, Any], started: float,
           progress: Progress) -> artifact.Dataset:  # fmt: skip
    """Passes 3 (weight totals, exact) and 4 (each partition's part of the artifact), then the metadata and the
    swap into place; both engines end here, so their artifacts are written by the same code."""
    from tqdm import tqdm

    calendar, bounds, streams, role_counts = summary.calendar, summary.bounds, summary.streams, summary.role_counts
    progress(f"{calendar.candidates:,} labelled decisions, {calendar.rows:,} samples; split {dict(role_counts)}")
    if not role_counts["train"]:
        raise InputError("every training sample was purged: the label horizon is too long for the training period")
    for partition in partitions:
        with stage("weights"):
            rows = staged.samples(partition, ["event_timestamp", "t1", "target"])
            _weights(staged.local(partition), roles_of(bounds, rows), streams, rows, None)
    symbols_out: list[str] = []
    labels: Counter[int] = Counter()
    for partition in tqdm(partitions, desc="write", unit="partition", disable=None, leave=False):
        with stage("write"):
            rows = staged.samples(partition)
            roles = roles_of(bounds, rows)
            weights = _weights(staged.local(partition), roles, streams, rows, dict(role_counts))
            rows["split"] = roles
            rows["weight"] = weights.pop("weight")
            ordered = [*artifact.ID_COLUMNS, *artifact.LABEL_COLUMNS, "upper", "lower"]
            columns = {c: rows.pop(c) for c in ordered} | dict(weights.items())
            columns |= dict(rows[service.features].items())
            del rows, weights
            frame = pd.DataFrame(columns, copy=False)
            writer.write_part(frame)
            symbols_out += pd.unique(frame["symbol"]).tolist()
            labels.update(frame["label"].tolist())
            del frame, columns
    with stage("fingerprint"):
        fingerprint = writer.fingerprint(config.dump(), service.features)
    split_counts = {role: int(role_counts[role]) for role in ("train", "purged", "embargo", "validation")}
    classes = sorted(int(c) for c in calendar.classes)
    tz = calendar.tz
    start, end = request["start"], request["end"]
    metadata = {
        "format_version": artifact.FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint": fingerprint,
        "feature_service": service.name,
        "features": service.features,
        "feature_ttl_seconds": service.ttl_seconds,
        "warmup_bars": request["warmup"],
        "target": {"kind": config.target, "classes": classes, "positive": "label == +1"},
        "rows": calendar.rows,
        "rows_by_split": split_counts,
        "rows_dropped_nonfinite": calendar.nonfinite,
        "symbols": sorted(symbols_out),
        "period": {
            "first_t0": timestamp_of(int(calendar.dates[0]), tz).isoformat(),
            "last_t0": timestamp_of(int(calendar.dates[-1]), tz).isoformat(),
        },
        "request": {"symbols": request["symbols"], "start": _text(start), "end": _text(end)},
        # What the build read was known at this time: `build-dataset --known-at` it to rebuild these rows.
        "known_at": _iso(request.get("known_at")),
        "split": split_summary(
            timestamp_of(bounds.cutoff, tz),
            timestamp_of(bounds.validation_start, tz),
            bounds.embargo,
            bounds.embargo_bars,
            bounds.n_bars,
            split_counts,
        ),
        "label_distribution": {str(k): int(v) for k, v in sorted(labels.items())},
        "partitions": {"count": request["partitions"], "bars_per_partition": request["bars_per_partition"]},
        "config": config.dump(),
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    with stage("write"):
        writer.commit(metadata)
    return artifact.load(writer.out)


def _text(day: date | None) -> str | None:
    return str(day) if day else None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
