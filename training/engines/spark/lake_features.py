"""``compute-features`` on the Spark engine: the 23 indicators of the lake's bars into its ``features`` table.

The PostgreSQL job's rules (training.indicators.backfill), on Spark: indicators come from adjusted bars
(``COALESCE(adj_*, raw)``), one row per bar, NULL inside a feature's warm-up; a symbol is recomputed, on its
whole history, when one of its bars has no feature row or one whose reference values (close, volume,
high/low, close/open) no longer match the bar, or when a feature row has lost its bar (those rows are
removed); ``full`` recomputes every selected symbol. A recomputed row identical to the stored one keeps its
created_timestamp; a run that changes nothing writes nothing. Only the buckets holding recomputed symbols
are rewritten, from rows staged first (:mod:`training.engines.spark.lake`), after the versions they replace or
remove are appended to the history (:mod:`training.engines.spark.lake_versions`).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from training.engines.spark import lake, lake_versions
from training.engines.spark.lake_bars import ADJUSTED, to_pandas
from training.engines.spark.spark_indicators import compute_on_spark
from training.errors import InputError, name_some
from training.indicators.backfill import FeaturesResult
from training.indicators.definitions import FEATURE_NAMES, REFERENCE_COLUMNS

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

STORED_VALUES = (*FEATURE_NAMES, *REFERENCE_COLUMNS)
FEATURE_SCHEMA = ", ".join(
    ["symbol string", "event_timestamp timestamp", "created_timestamp timestamp"]
    + [f"`{name}` double" for name in STORED_VALUES]
)
_SAME_VALUES = " AND ".join(f"c.`{v}` <=> f.`{v}`" for v in STORED_VALUES)

_BARS = f"""
SELECT symbol, event_timestamp, trade_date, {ADJUSTED} FROM lake_bars
WHERE :all_symbols OR array_contains(:symbols, symbol)
"""
# Symbols to recompute: a bar without a current feature row, or a feature row without its bar.
_STALE = """
SELECT b.symbol FROM bars b LEFT JOIN stored f ON f.symbol = b.symbol AND f.event_timestamp = b.event_timestamp
WHERE :full OR f.symbol IS NULL
   OR NOT (f.close <=> b.close AND f.volume <=> b.volume AND f.high_low_ratio <=> b.high / b.low
           AND f.close_open_ratio <=> b.close / b.open)
UNION
SELECT f.symbol FROM stored f LEFT ANTI JOIN bars b ON b.symbol = f.symbol AND b.event_timestamp = f.event_timestamp
WHERE :all_symbols OR array_contains(:symbols, f.symbol)
"""
# The recomputed symbols' new rows: computed rows inside the date range (created kept when identical), and
# outside it the stored rows that still have a bar.
_NEW_ROWS = f"""
SELECT c.symbol, c.event_timestamp,
       CASE WHEN f.symbol IS NOT NULL AND {_SAME_VALUES} THEN f.created_timestamp
            ELSE greatest(:now, f.created_timestamp) END AS created_timestamp,
       {", ".join(f"c.`{v}`" for v in STORED_VALUES)},
       f.symbol IS NULL AS inserted, f.symbol IS NOT NULL AND NOT ({_SAME_VALUES}) AS updated, true AS in_range
FROM computed c LEFT JOIN stored f ON f.symbol = c.symbol AND f.event_timestamp = c.event_timestamp
WHERE (:start IS NULL OR c.trade_date >= :start) AND (:end IS NULL OR c.trade_date <= :end)
UNION ALL
SELECT f.symbol, f.event_timestamp, f.created_timestamp, {", ".join(f"f.`{v}`" for v in STORED_VALUES)},
       false, false, false
FROM stored f JOIN computed c ON c.symbol = f.symbol AND c.event_timestamp = f.event_timestamp
WHERE NOT ((:start IS NULL OR c.trade_date >= :start) AND (:end IS NULL OR c.trade_date <= :end))
"""


def compute_lake_features(
    spark: SparkSession,
    symbols: list[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    full: bool = False,
) -> FeaturesResult:
    """Recompute the stale symbols' feature rows and replace their buckets; see the module docstring."""
    from pyspark.sql import functions as F

    stored_bars = lake.read_table(spark, lake.BARS, lake.BAR_SCHEMA)
    stored_bars.createOrReplaceTempView("lake_bars")
    selection = {"all_symbols": symbols is None, "symbols": F.array(*map(F.lit, symbols or [""]))}
    bars = spark.sql(_BARS, args=selection)
    if symbols:
        _refuse_unknown(symbols, {r[0] for r in bars.select("symbol").distinct().collect()})
    bars.createOrReplaceTempView("bars")
    lake.read_table(spark, lake.FEATURES, FEATURE_SCHEMA).createOrReplaceTempView("stored")
    with lake.staging(spark) as work:
        stale = lake.staged(spark, spark.sql(_STALE, args={"full": full, **selection}), f"{work}/stale")
        stale_bars = bars.join(stale.distinct(), "symbol", "left_semi")
        computed = compute_on_spark(stale_bars).join(stale_bars.select("symbol", "event_timestamp", "trade_date"),
                                                     ["symbol", "event_timestamp"])  # fmt: skip
        computed.createOrReplaceTempView("computed")
        window = {"start": start, "end": end, "now": lake_versions.clock()}
        new_rows = lake.staged(spark, spark.sql(_NEW_ROWS, args=window), f"{work}/new")
        in_range = new_rows.where("in_range")
        counts = in_range.agg(F.count("*"), F.countDistinct("symbol"), F.count_if("inserted"), F.count_if("updated"))
        counts = counts.collect()[0]
        rows, n_symbols, inserted, updated = (int(v or 0) for v in counts)
        stored = spark.table("stored")
        removed = (
            stored.join(stale, "symbol", "left_semi")
            .join(new_rows.select("symbol", "event_timestamp"), ["symbol", "event_timestamp"], "left_anti")
            .count()
        )
        if inserted or updated or removed:
            touched = stale.select(lake.bucket_of(stale["symbol"]).alias("b")).distinct()
            before = stored.where(lake.bucket_of(stored["symbol"]).isin([r[0] for r in touched.collect()]))
            kept = before.join(stale, "symbol", "left_anti")
            after = kept.unionByName(new_rows.drop("inserted", "updated", "in_range"))
            after = lake.staged(spark, after, f"{work}/after")
            lake_versions.replace_keeping_versions(spark, before, after, lake.FEATURES, window["now"], work)
    return FeaturesResult(rows=rows, inserted=inserted, updated=updated, symbols=n_symbols, full=full, removed=removed)


def _refuse_unknown(asked: list[str], found: set[str]) -> None:
    unknown = [s for s in asked if s not in found]
    if unknown:
        raise InputError(f"no bars in the lake for {len(unknown)} symbol(s): {name_some(unknown)}")


def feature_symbols(spark: SparkSession) -> list[str]:
    """The sorted distinct symbols of the lake's features table (none when it was never written)."""
    rows = lake.read_table(spark, lake.FEATURES, FEATURE_SCHEMA).select("symbol").distinct().collect()
    return sorted(r[0] for r in rows)


def latest_feature_rows(spark: SparkSession, symbols: list[str]) -> pd.DataFrame:
    """The newest row of each symbol as the Feast source sees it (what materialize loads online), ties broken by
    the newest created_timestamp, as the PostgreSQL profile's read and Feast's pull break them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    source = spark.sql(lake.features_source_query()).drop(lake.BUCKET)
    newest_first = Window.partitionBy("symbol").orderBy(F.desc("event_timestamp"), F.desc("created_timestamp"))
    rows = source.where(F.col("symbol").isin(symbols)).withColumn("_rank", F.row_number().over(newest_first))
    return to_pandas(rows.where("_rank = 1").drop("_rank"))
