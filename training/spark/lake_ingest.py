"""Load clean bars into the lake's ``bars`` table with the PostgreSQL load's rules (training.ingestion.upsert).

The same decisions, as Spark SQL over the file's stage and the stored bars of the buckets it touches: one bar
per (symbol, trade date); a bar identical to the stored one is left alone (created_timestamp too); a changed
bar is updated and re-created; a bar at another session close is moved to the file's stamp; a column absent
from the file never erases stored values (the stored adjustment factor is applied to the file's raw values);
duplicate (symbol, date) rows, a symbol left with both adjusted and raw bars, and a stamp already taken by
another stored date are refused naming them. The file is staged chunk by chunk as it is read and checked;
nothing is written to the table before the whole file has passed, and a load that changes nothing writes
nothing. Only the buckets holding the file's symbols are rewritten (:func:`training.spark.lake.replace_buckets`).

Unlike PostgreSQL, the lake has no lock: run one ingest at a time per lake (a scheduler's job does).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from training.ingestion.file_lines import MAX_REPORTED_ROWS
from training.ingestion.upsert import (
    STORED_COLUMNS,
    IngestResult,
    duplicates_error,
    mixed_adjustment_error,
    taken_stamp_error,
)
from training.spark import lake

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

_RAW = ("open", "high", "low", "close", "volume")
_ADJUSTED = ("adj_open", "adj_high", "adj_low", "adj_close", "adj_volume")
_VALUES = (*_RAW, *_ADJUSTED)
STAGE_SCHEMA = lake.BAR_SCHEMA.replace(", created_timestamp timestamp", "") + ", line long, dropped boolean"
_STAGE_COLUMNS = (*STORED_COLUMNS, "line", "dropped")


def _merged_adjusted(column: str) -> str:
    """The adjusted value to store: the file's, else the stored bar's factor applied to the file's raw values."""
    raw = column.removeprefix("adj_")
    rescaled = "s.volume / (o.adj_close / o.close)" if raw == "volume" else f"s.{raw} * (o.adj_close / o.close)"
    same_raw = " AND ".join(f"s.{c} = o.{c}" for c in _RAW)
    return (
        f"CASE WHEN s.adj_close IS NOT NULL THEN s.{column} WHEN o.adj_close IS NULL THEN NULL "
        f"WHEN {same_raw} THEN o.{column} ELSE {rescaled} END AS {column}"
    )


# One row per staged bar: merged values, the stored bar of its (symbol, trade_date), and what to do.
_PLAN = f"""
SELECT s.symbol, s.event_timestamp, s.trade_date, {", ".join(f"s.{c}" for c in _RAW)},
       {", ".join(_merged_adjusted(c) for c in _ADJUSTED)},
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
_DUPLICATES = """
SELECT s.line, s.symbol, s.trade_date, count(*) OVER () AS total
FROM stage_all s
JOIN (SELECT symbol, trade_date FROM stage_all GROUP BY 1, 2 HAVING count(*) > 1) d
  ON d.symbol = s.symbol AND d.trade_date = s.trade_date
ORDER BY s.line
LIMIT :limit
"""
# Symbols the load would leave with both adjusted and raw bars: the merged file rows plus every stored bar
# of the file's symbols on a date the file does not hold.
_MIXED = """
WITH after AS (
    SELECT symbol, adj_close IS NOT NULL AS adjusted FROM plan
    UNION ALL
    SELECT t.symbol, t.adj_close IS NOT NULL FROM stored t
    LEFT SEMI JOIN (SELECT DISTINCT symbol FROM stage) f ON f.symbol = t.symbol
    LEFT ANTI JOIN stage s ON s.symbol = t.symbol AND s.trade_date = t.trade_date
)
SELECT symbol, count_if(adjusted), count_if(NOT adjusted)
FROM after GROUP BY symbol HAVING bool_or(adjusted) AND bool_or(NOT adjusted)
ORDER BY symbol
"""
# A bar whose new stamp is already taken by a stored bar of another date the file does not touch.
_STAMP_TAKEN = """
SELECT p.symbol, p.trade_date, t.trade_date FROM plan p
JOIN stored t ON t.symbol = p.symbol AND t.event_timestamp = p.event_timestamp AND t.trade_date <> p.trade_date
LEFT ANTI JOIN stage s ON s.symbol = t.symbol AND s.trade_date = t.trade_date
WHERE NOT p.same_stamp
LIMIT 1
"""
# The new content of the touched buckets: their stored bars on dates the file does not hold, and the file's
# bars, keeping the stored created_timestamp of unchanged ones.
_AFTER = f"""
SELECT t.* FROM stored t LEFT ANTI JOIN stage s ON s.symbol = t.symbol AND s.trade_date = t.trade_date
UNION ALL
SELECT {", ".join(STORED_COLUMNS)},
       CASE WHEN same_stamp AND NOT ({_CHANGED}) THEN stored_created ELSE :now END AS created_timestamp
FROM plan
"""


def upsert_lake(
    spark: SparkSession, chunks: Iterable[pd.DataFrame], allow_mixed_adjustment: bool = False
) -> IngestResult:
    """Stage validated bars chunk by chunk (see :func:`~training.ingestion.bar_files.clean_chunks`), decide
    and check the whole load, then replace the touched buckets of the lake's bars; see the module docstring."""
    with lake.staging(spark) as work:
        for bars in chunks:
            frame = bars.reindex(columns=list(_STAGE_COLUMNS))
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
            after = spark.sql(_AFTER, args={"now": datetime.now(UTC)})
            lake.replace_buckets(lake.staged(spark, after, f"{work}/after"), lake.BARS)
    return IngestResult(rows=rows, inserted=inserted, updated=updated, symbols=symbols, restamped=restamped)


def _refuse_duplicates(spark: SparkSession) -> None:
    twins = spark.sql(_DUPLICATES, args={"limit": MAX_REPORTED_ROWS}).collect()
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
