"""Load clean bars into the lake's ``bars`` table by the rules of :mod:`training.ingestion.load_rules`.

The same decisions, as Spark SQL over the file's stage and the stored bars of the buckets it touches: one bar
per (symbol, trade date); a bar identical to the stored one is left alone (created_timestamp too); a changed
bar is updated and re-created; a bar at another session close is moved to the file's stamp; a column absent
from the file never erases stored values (the stored adjustment factor is applied to the file's raw values);
duplicate (symbol, date) rows, a symbol left with both adjusted and raw bars, and a stamp already taken by
another stored date are refused naming them. The file is staged chunk by chunk as it is read and checked;
nothing is written to the table before the whole file has passed, and a load that changes nothing writes
nothing. Only the buckets holding the file's symbols are rewritten
(:func:`training.engines.spark.lake.replace_buckets`), after every version the load replaces (a corrected,
re-adjusted or re-stamped bar) is appended to the history (:mod:`training.engines.spark.lake_versions`).

Unlike PostgreSQL, the lake has no lock: run one ingest at a time per lake (a scheduler's job does).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from training.engines.spark import lake, lake_versions
from training.ingestion.load_rules import (
    ADJUSTED,
    RAW,
    STAGED_COLUMNS,
    STORED_COLUMNS,
    IngestResult,
    duplicates_error,
    duplicates_query,
    merged_adjusted,
    mixed_adjustment_error,
    mixed_adjustment_query,
    taken_stamp_error,
    taken_stamp_query,
)

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

_VALUES = (*RAW, *ADJUSTED)
STAGE_SCHEMA = lake.BAR_SCHEMA.replace(", created_timestamp timestamp", "") + ", line long, dropped boolean"


# One row per staged bar: merged values, the stored bar of its (symbol, trade_date), and what to do.
_PLAN = f"""
SELECT s.symbol, s.event_timestamp, s.trade_date, {", ".join(f"s.{c}" for c in RAW)},
       {", ".join(merged_adjusted(c) for c in ADJUSTED)},
       o.symbol IS NOT NULL AS known,
       coalesce(o.event_timestamp = s.event_timestamp, false) AS same_stamp,
       coalesce(o.event_timestamp <> s.event_timestamp, false) AS restamped,
       o.created_timestamp AS stored_created,
       {", ".join(f"o.{c} AS stored_{c}" for c in _VALUES)}
FROM stage s LEFT JOIN stored o ON o.symbol = s.symbol AND o.trade_date = s.trade_date
"""
_CHANGED = "same_stamp AND NOT (" + " AND ".join(f"{c} <=> stored_{c}" for c in _VALUES) + ")"
_COUNTS = f"""
SELECT count(*), count(DISTINCT symbol), count_if(NOT known), count_if(restamped OR changed), count_if(restamped)
FROM (SELECT *, {_CHANGED} AS changed FROM plan)
"""
_DUPLICATES = duplicates_query("stage_all")
_MIXED = mixed_adjustment_query("plan", "stage", "stored")
_STAMP_TAKEN = taken_stamp_query("plan", "stage", "stored")
# The new content of the touched buckets: their stored bars on dates the file does not hold, and the file's
# bars, keeping the stored created_timestamp of unchanged ones; a changed bar's version is never known before
# the one it replaces (PostgreSQL's rule, training.infra.versions.REPLACED_AT).
_AFTER = f"""
SELECT t.* FROM stored t LEFT ANTI JOIN stage s ON s.symbol = t.symbol AND s.trade_date = t.trade_date
UNION ALL
SELECT {", ".join(STORED_COLUMNS)},
       CASE WHEN NOT same_stamp THEN :now WHEN {_CHANGED} THEN greatest(:now, stored_created)
            ELSE stored_created END AS created_timestamp
FROM plan
"""


def upsert_lake(
    spark: SparkSession, chunks: Iterable[pd.DataFrame], allow_mixed_adjustment: bool = False
) -> IngestResult:
    """Stage validated bars chunk by chunk (see :func:`~training.ingestion.bar_files.clean_chunks`), decide
    and check the whole load, then replace the touched buckets of the lake's bars; see the module docstring."""
    with lake.staging(spark) as work:
        for bars in chunks:
            frame = bars.reindex(columns=list(STAGED_COLUMNS))
            spark.createDataFrame(frame, STAGE_SCHEMA).write.mode("append").parquet(f"{work}/stage")
        stage_all = spark.read.parquet(f"{work}/stage")
        stage_all.createOrReplaceTempView("stage_all")
        _refuse_duplicates(spark)
        stage = stage_all.where("NOT dropped").drop("line", "dropped")
        stage.createOrReplaceTempView("stage")
        buckets = [r[0] for r in stage.select(lake.bucket_of(stage["symbol"])).distinct().collect()]
        stored = lake.read_table(spark, lake.BARS, lake.BAR_SCHEMA)
        stored = stored.where(lake.bucket_of(stored["symbol"]).isin(buckets))
        stored.createOrReplaceTempView("stored")
        plan = lake.staged(spark, spark.sql(_PLAN), f"{work}/plan")
        plan.createOrReplaceTempView("plan")
        rows, symbols, inserted, updated, restamped = spark.sql(_COUNTS).collect()[0]
        if not allow_mixed_adjustment:
            _refuse_mixed_adjustment(spark)
        if inserted or restamped:
            _refuse_taken_stamps(spark)
        if inserted or updated:
            now = lake_versions.clock()
            after = lake.staged(spark, spark.sql(_AFTER, args={"now": now}), f"{work}/after")
            lake_versions.replace_keeping_versions(spark, stored, after, lake.BARS, now, work)
    return IngestResult(rows=rows, inserted=inserted, updated=updated, symbols=symbols, restamped=restamped)


def _refuse_duplicates(spark: SparkSession) -> None:
    twins = spark.sql(_DUPLICATES).collect()
    if twins:
        raise duplicates_error(twins)


def _refuse_mixed_adjustment(spark: SparkSession) -> None:
    mixed = spark.sql(_MIXED).collect()
    if mixed:
        raise mixed_adjustment_error(mixed)


def _refuse_taken_stamps(spark: SparkSession) -> None:
    taken = spark.sql(_STAMP_TAKEN).collect()
    if taken:
        raise taken_stamp_error(*taken[0])
