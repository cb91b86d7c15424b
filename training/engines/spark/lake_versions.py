"""The lake's versions: every bar and feature row version with the time it became known, as PostgreSQL keeps
them (:mod:`training.infra.versions`), in Parquet.

Beside each table (``bars/``, ``features/``) a history dataset (``bars_history/``, ``features_history/``, the
same buckets) receives every version a write replaces or removes, with ``superseded_timestamp``, the time the
next version became known. It is append-only: a write adds files to the buckets it touched and never rewrites
or deletes one. What a write replaced or removed is one rule for every writer: the touched buckets' rows
before the write that are not, identical, among their rows after it (a row left alone keeps its values and its
created_timestamp; a changed one gets a new created_timestamp). So the writes that add versions are
PostgreSQL's: a correction, a re-adjustment, a re-stamped bar, a feature row recomputed with other values or
left without its bar; a no-op ingest or recompute writes nothing at all.

A write appends its replaced versions first, then replaces the buckets. Stopped between the two, it leaves the
replaced versions both in the history and still current; read as known at a time they are identical rows,
which the lake's reading drops (``UNION``, not ``UNION ALL``): nothing is lost and nothing is doubled.

The clock is the driver's (``datetime.now(UTC)``): the writers stamp versions with it and a build records it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from training.engines.spark import lake
from training.infra import versions

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from training.feast_store.plan import JoinGroup

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def history_name(name: str) -> str:
    """``bars`` -> ``bars_history``: the history dataset beside the table."""
    return name + versions.HISTORY_SUFFIX


def version_columns(name: str) -> tuple[str, ...]:
    """A version's columns, created_timestamp included: PostgreSQL's, in its tables' order."""
    from training.indicators.feature_table import FEATURE_ROW_COLUMNS
    from training.infra.schema import OHLCV_VERSION_COLUMNS

    return {lake.BARS: (*OHLCV_VERSION_COLUMNS, "created_timestamp"), lake.FEATURES: FEATURE_ROW_COLUMNS}[name]


def clock() -> datetime:
    """The lake's clock: the knowledge time of what a write stores, and of what a build reads."""
    return datetime.now(UTC)


def replace_keeping_versions(
    spark: SparkSession, before: DataFrame, after: DataFrame, name: str, now: datetime, work: str
) -> int:
    """Replace the buckets ``before`` (their stored rows) holds with ``after``, after appending to the history
    every row of ``before`` that ``after`` does not hold identically, superseded at ``now`` (never before its
    own creation). ``after`` must not read the table (stage it first). Returns the versions archived."""
    from pyspark.sql import functions as F

    columns = before.columns
    replaced = before.exceptAll(after.select(*columns))
    superseded = F.greatest(F.lit(now), F.col("created_timestamp")).alias(versions.SUPERSEDED)
    replaced = lake.staged(spark, replaced.select(*columns, superseded), f"{work}/replaced")
    archived = replaced.count()
    if archived:
        _append(replaced, history_name(name))
    lake.replace_buckets(after, name)
    return archived


def _append(rows: DataFrame, name: str) -> None:
    """Add ``rows`` to the buckets they fall in, as new files: nothing stored is rewritten."""
    with_bucket = rows.withColumn(lake.BUCKET, lake.bucket_of(rows["symbol"]))
    (
        with_bucket.repartition(lake.BUCKET)
        .sortWithinPartitions("symbol", "event_timestamp", "created_timestamp")
        .write.mode("append")
        .partitionBy(lake.BUCKET)
        .parquet(lake.table_uri(name))
    )


def read_versions(spark: SparkSession, name: str, schema: str) -> DataFrame:
    """The table as the enclosing :func:`training.infra.versions.knowing` block knew it (its newest rows
    outside one), without the bucket column; no rows of ``schema`` when it was never written."""
    if versions.known_at() is None or not lake.exists(spark, name):
        return lake.read_table(spark, name, schema)
    return spark.sql(f"SELECT * FROM {known_relation(spark, name)} AS t")


def known_relation(spark: SparkSession, name: str) -> str:
    """The table as known at the enclosing knowing() time, as a parenthesised Spark SQL query: PostgreSQL's
    rule (:func:`training.infra.versions.versions_sql`) over the table and its history (when one was written)."""
    at = versions.known_at()
    if at is None:
        raise RuntimeError("known_relation outside a knowing() block")
    columns = [f"`{c}`" for c in version_columns(name)]
    return versions.versions_sql(lake.sql_name(name), _history(spark, name), columns, _spark_time(at), union="UNION")


def every_version_relation(spark: SparkSession, name: str) -> str:
    """Every version of the table (current and history) with ``superseded_timestamp``, as known at the enclosing
    knowing() time when there is one: PostgreSQL's relation for a join by decision time
    (:func:`training.infra.versions.every_version_sql`), in Spark SQL."""
    at = versions.known_at()
    columns = [f"`{c}`" for c in version_columns(name)]
    at_sql = None if at is None else _spark_time(at)
    no_time = "CAST(NULL AS TIMESTAMP)"
    return versions.every_version_sql(lake.sql_name(name), _history(spark, name), columns, at_sql, no_time, "UNION")


def _history(spark: SparkSession, name: str) -> str | None:
    """The history dataset's Spark SQL name, None when no version was ever replaced."""
    history = history_name(name)
    return lake.sql_name(history) if lake.exists(spark, history) else None


def _spark_time(at: datetime) -> str:
    return f"timestamp_micros({(at - _EPOCH) // timedelta(microseconds=1)})"


def as_known(spark: SparkSession, groups: list[JoinGroup], every_version: bool = False) -> None:
    """Within knowing(), make the lake store's join read the features table's versions known then;
    ``every_version`` (a join by decision time): every version (known then) with its ``superseded_timestamp``,
    as PostgreSQL's store does (:func:`training.feast_store.known_at.as_known`)."""
    from training.feast_store.known_at import read_as_known

    table = lake.sql_name(lake.FEATURES)
    if every_version and lake.exists(spark, lake.FEATURES):
        read_as_known(groups, table, every_version_relation(spark, lake.FEATURES), versions.SUPERSEDED)
    elif versions.known_at() is not None:
        read_as_known(groups, table, known_relation(spark, lake.FEATURES))
