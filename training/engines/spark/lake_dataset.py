"""``build-dataset`` on the Spark engine: the one-box builder's passes (:mod:`training.dataset.builder`) with the
per-symbol work on Spark.

Spark runs what needs one symbol's history, one symbol per call, with the one-box kernels: the labels
(``triple_barrier_labels``), the point-in-time join (the lake's Feast store, the Spark sort-merge of
:mod:`training.engines.spark.lake_offline_store`), the finite-feature filter and the per-symbol weight
components (``WeightStream.local``: uniqueness, return attribution). The driver keeps what needs every
symbol, and only as small arrays: the calendar (distinct decision dates and their counts), the hold-out
boundaries, the per-date uniqueness sums and class counts, the exact weight totals. It then writes the
artifact with the builder's own last passes (:func:`training.dataset.builder.finish`), one symbol partition
at a time, read back from the staged rows. Same kernels, the global sums in the same order: the dataset
equals the one-box dataset row for row, and its fingerprint is the same.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from training.config import Config
from training.contract import AUDIT_FEATURE
from training.dataset import artifact
from training.dataset.builder import (
    STAGED_COLUMNS,
    Calendar,
    Progress,
    Summary,
    check_history,
    decide_split,
    finish,
    knowledge_time,
    roles_of,
    target_of,
    window_frame,
)
from training.dataset.historical_features import ServiceFeatures, describe_service, retrieve
from training.dataset.offline_bars import check_range, decision_mask
from training.engines.spark import lake, lake_bars, lake_versions
from training.engines.spark.on_demand import with_on_demand_features
from training.errors import InputError
from training.indicators.definitions import warmup_bars
from training.labeling.sample_weights import WeightStream
from training.labeling.triple_barrier import BARRIER_NAMES, triple_barrier_labels
from training.partitions import Partition, plan_partitions

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)
PART = "part"  # the symbol partition (of the one-box plan) a row belongs to: the artifact's part it is written in
UNIQUENESS = "_uniqueness"  # a weighted row's average uniqueness, for time decay's per-date sums (NaN otherwise)
LOCAL_COMPONENTS = ("uniqueness", "return_attribution")  # the per-symbol weight components, when enabled
_TIMESTAMPS = ("event_timestamp", "t1", "feature_timestamp")
_LABEL_SCHEMA = (
    "symbol string, event_timestamp timestamp, next_ret double, t1 timestamp, label tinyint, ret double, "
    "barrier string, upper double, lower double, target tinyint, part int"
)


def _ns(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Spark's timestamps in a pandas UDF (naive, session zone UTC) as naive nanoseconds, as the kernels expect."""
    for name in columns:
        if name in frame.columns:
            frame[name] = frame[name].astype("datetime64[ns]")
    return frame


def symbol_samples(bars: pd.DataFrame, config: Config, request: dict[str, Any]) -> pd.DataFrame:
    """One symbol's labelled decisions (pass 1 before the join), as the builder makes a partition's."""
    bars = _ns(bars.sort_values("event_timestamp", kind="stable").reset_index(drop=True), ("event_timestamp",))
    decisions = decision_mask(bars, request["start"], request["end"]) & (bars.index >= request["warmup"])
    labels = triple_barrier_labels(bars, config.labels.model_dump()).rename(columns={"t0": "event_timestamp"})
    bars["next_ret"] = bars["close"].shift(-1) / bars["close"] - 1.0
    keys = ["symbol", "event_timestamp"]
    rows = bars.loc[decisions, [*keys, "next_ret"]].merge(labels, on=keys)
    rows["barrier"] = rows["barrier"].astype(str)
    rows["target"] = target_of(rows, config)
    rows[PART] = np.int32(bars[PART].iloc[0]) if len(bars) else np.int32(0)
    return rows


def symbol_local_weights(samples: pd.DataFrame, bars: pd.DataFrame, bounds: Any, streams: dict[str, WeightStream],
                         columns: list[str]) -> pd.DataFrame:  # fmt: skip
    """One symbol's samples with their per-symbol weight components and uniqueness (pass 2's local half)."""
    if samples.empty:
        return pd.DataFrame(columns=columns)
    samples = _ns(samples.sort_values("event_timestamp", kind="stable").reset_index(drop=True), _TIMESTAMPS)
    bars = _ns(bars.sort_values("event_timestamp", kind="stable").reset_index(drop=True), ("event_timestamp",))
    roles = roles_of(bounds, samples)
    for name in (*LOCAL_COMPONENTS, UNIQUENESS):
        samples[name] = np.nan
    for role, stream in streams.items():
        mine = roles == role
        if not mine.any():
            continue
        local, uniqueness = stream.local(window_frame(samples[mine]), bars)
        for name in local.columns:
            samples.loc[mine, name] = local[name].to_numpy()
        if uniqueness is not None:
            samples.loc[mine, UNIQUENESS] = uniqueness
    return samples[columns]


@dataclass
class _StagedLake:
    """The staged rows of one partition at a time, read back from the lake (one Spark read per partition)."""

    spark: SparkSession
    uri: str
    local_columns: list[str]
    features: list[str]
    _cached: tuple[int, pd.DataFrame] | None = field(default=None, repr=False)

    def _rows(self, partition: Partition) -> pd.DataFrame:
        from pyspark.sql import functions as F

        if self._cached is None or self._cached[0] != partition.index:
            self._cached = None  # one partition in memory, never two
            wanted = dict.fromkeys([*STAGED_COLUMNS, *self.features, *self.local_columns, UNIQUENESS])
            rows = self.spark.read.parquet(self.uri).where(F.col(PART) == partition.index).select(*wanted)
            frame = lake_bars.to_pandas(rows)
            # The builder's order: time, then symbol (one row per (time, symbol), so the order is total).
            frame = frame.sort_values(["event_timestamp", "symbol"], kind="stable").reset_index(drop=True)
            frame["barrier"] = pd.Categorical(frame["barrier"], categories=list(BARRIER_NAMES))
            # The one-box builder keeps the joined row's stamp in the unit Feast's Arrow result has (microseconds).
            frame["feature_timestamp"] = frame["feature_timestamp"].astype("datetime64[us, UTC]")
            self._cached = (partition.index, frame)
        return self._cached[1]

    def samples(self, partition: Partition, columns: list[str] | None = None) -> pd.DataFrame:
        rows = self._rows(partition)
        return rows[[*STAGED_COLUMNS, *self.features] if columns is None else columns].copy()

    def local(self, partition: Partition) -> pd.DataFrame:
        return self._rows(partition)[self.local_columns].copy()

    def uniqueness(self, partition: Partition) -> pd.DataFrame:
        return self._rows(partition)[["event_timestamp", "t1", "target", UNIQUENESS]]


def build_lake_dataset(
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
    """Build the dataset of the lake's bars and features into the artifact folder ``out`` (atomically);
    ``known_at``: from the versions known then (:mod:`training.engines.spark.lake_versions`), the one-box
    builder's rule (:func:`training.dataset.builder.knowledge_time`) on the lake's clock."""
    from training.engines.spark.session import session

    spark = session()
    with knowledge_time(known_at, lake_versions.clock(), "the lake's clock (this driver's)") as at:
        return _build(spark, config, store, out, symbols, start, end, progress, partition_bars, at)


def _build(spark: SparkSession, config: Config, store: Any, out: Path, symbols: list[str] | None,
           start: date | None, end: date | None, progress: Progress, partition_bars: int | None,
           known_at: datetime) -> artifact.Dataset:  # fmt: skip
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType
    from tqdm import tqdm

    from training.infra.settings import partition_bars as default_budget

    started = time.perf_counter()
    horizon, warmup = config.labels.horizon, warmup_bars()
    check_range(start, end)
    wanted = lake_bars.checked_symbols(spark, symbols)
    counts = check_history(lake_bars.bar_counts(spark, wanted), symbols is not None, horizon, warmup)
    budget = partition_bars or default_budget()
    partitions = plan_partitions(counts, budget)
    service = describe_service(store, config.features.feature_service)
    progress(
        f"{sum(n for _, n in counts):,} bars of {len(counts)} symbols in {len(partitions)} partition(s), on Spark; "
        f"warm-up {warmup} bars; joining {len(service.features)} features point-in-time"
    )
    request = {"start": start, "end": end, "warmup": warmup, "horizon": horizon, "symbols": symbols,
               "partitions": len(partitions), "bars_per_partition": budget, "known_at": known_at}  # fmt: skip
    part_of = spark.createDataFrame([(s, p.index) for p in partitions for s in p.symbols], f"symbol string, {PART} int")
    bars = lake_bars.adjusted_bars(spark, [s for s, _ in counts]).join(F.broadcast(part_of), "symbol")
    lake_bars.require_features(spark, bars)
    with lake.staging(spark) as work, artifact.ArtifactWriter(out) as writer:
        samples, calendar = _label_and_join(spark, store, service, bars, config, request, work)
        bounds, streams = decide_split(calendar, config, request)
        local_columns = [c for c in LOCAL_COMPONENTS if getattr(config.weights, c, False)]
        columns = [*samples.columns, *local_columns, UNIQUENESS]
        schema = StructType(list(samples.schema.fields))  # a copy: StructType.add changes it in place
        for name in (*local_columns, UNIQUENESS):
            schema = schema.add(name, "double")
        weighed = (
            samples.groupBy("symbol")
            .cogroup(bars.groupBy("symbol"))
            .applyInPandas(
                lambda rows, history: symbol_local_weights(rows, history, bounds, streams, columns), schema=schema
            )
        )
        progress("per-symbol weight components on Spark")
        weighed.write.partitionBy(PART).parquet(f"{work}/rows")
        staged = _StagedLake(spark, f"{work}/rows", local_columns, service.features)
        written = [p for p in partitions if p.index in calendar.staged]
        role_counts: Counter[str] = Counter()
        for partition in tqdm(written, desc="weights", unit="partition", disable=None, leave=False):
            rows = staged.uniqueness(partition)
            roles = roles_of(bounds, rows)
            role_counts.update(roles.tolist())
            for role, stream in streams.items():  # in partition order, rows in (time, symbol) order: the builder's
                mine = roles == role
                uniqueness = rows[UNIQUENESS].to_numpy()[mine] if stream.decay != 1.0 else None
                stream.gather(rows["event_timestamp"][mine], uniqueness, rows["target"][mine])
        summary = Summary(calendar, bounds, streams, role_counts)
        return finish(writer, staged, written, summary, config, service, request, started, progress)


def _label_and_join(spark: SparkSession, store: Any, service: ServiceFeatures, bars: DataFrame, config: Config,
                    request: dict[str, Any], work: str) -> tuple[DataFrame, Calendar]:  # fmt: skip
    """Pass 1 on Spark: labelled decisions, their point-in-time features, only rows with every feature finite,
    staged in the lake; the calendar the split is decided from, collected as small arrays."""
    from pyspark.sql import functions as F

    candidates = bars.groupBy("symbol").applyInPandas(
        lambda history: symbol_samples(history, config, request), schema=_LABEL_SCHEMA
    )
    job = retrieve(store, candidates, service, config.features.decision_time)
    joined = with_on_demand_features(job)
    if AUDIT_FEATURE not in joined.columns:
        raise InputError(f"feature service {service.name!r} does not carry {AUDIT_FEATURE}; it is needed for the audit")
    finite = F.lit(True)
    for name in service.features:
        value = F.col(f"`{name}`").cast("double")
        finite &= value.isNotNull() & ~F.isnan(value) & (F.abs(value) != F.lit(float("inf")))
    joined = joined.select(
        *STAGED_COLUMNS[:3], F.col(AUDIT_FEATURE).alias("feature_timestamp"), *STAGED_COLUMNS[4:], PART,
        *(F.col(f"`{name}`").cast("double").alias(name) for name in service.features), finite.alias("finite"),
    )  # fmt: skip
    joined = lake.staged(spark, joined, f"{work}/joined")
    calendar = Calendar(tz="UTC")
    # One small aggregate for the counts, the classes, the partitions with samples and the label-order check.
    backwards, staged = 0, set()
    behind_t0 = F.count_if(F.col("t1") <= F.col("event_timestamp"))
    groups = joined.groupBy("target", "finite", PART).agg(F.count("*"), behind_t0)
    for target, is_finite, part, n, behind in groups.collect():
        calendar.candidates += n
        calendar.candidate_classes.add(int(target))
        if is_finite:
            calendar.rows += n
            calendar.classes.add(int(target))
            staged.add(part)
            backwards += behind
        else:
            calendar.nonfinite += n
    if backwards:
        raise InputError(f"{backwards} samples have t1 <= t0")
    calendar.staged = sorted(staged)
    samples = joined.where("finite").drop("finite")
    if calendar.rows:
        micros = F.unix_micros("event_timestamp")
        dates = samples.groupBy(micros.alias("t")).count().orderBy("t").collect()
        calendar.dates = np.array([r[0] for r in dates], dtype=np.int64) * 1000
        calendar.counts = np.array([r[1] for r in dates], dtype=np.int64)
        t1 = samples.select(F.unix_micros("t1").alias("t")).distinct().orderBy("t").collect()
        calendar.t1 = np.array([r[0] for r in t1], dtype=np.int64) * 1000
    calendar.any_decision = calendar.candidates > 0
    if not calendar.candidates:  # only the refusals need the bars' span: read it only then
        calendar.first_bar, calendar.last_bar = bars.agg(F.min("trade_date"), F.max("trade_date")).collect()[0]
        calendar.any_decision = _any_decision(bars, request)
    return samples, calendar


def _any_decision(bars: DataFrame, request: dict[str, Any]) -> bool:
    """Some bar after its symbol's warm-up lies in the requested dates (the builder's decision mask)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    position = F.row_number().over(Window.partitionBy("symbol").orderBy("event_timestamp")) - 1
    rows = bars.withColumn("_i", position).where(F.col("_i") >= request["warmup"])
    if request["start"] is not None:
        rows = rows.where(F.col("trade_date") >= F.lit(request["start"]))
    if request["end"] is not None:
        rows = rows.where(F.col("trade_date") <= F.lit(request["end"]))
    return bool(rows.limit(1).count())
