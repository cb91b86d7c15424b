"""The lake profile's tables: bars and features as Parquet datasets under OHLCV_LAKE, partitioned by symbol bucket.

A table is a folder of Parquet files hive-partitioned by ``bucket`` (a hash of the symbol), so a symbol's
rows are always in one bucket and a write replaces only the buckets it touched (Spark's dynamic partition
overwrite: each bucket's new files are written aside and moved in at commit). Writers compute their result
completely, from what they read, into the lake's staging folder first, and only then replace buckets: a
refused input has written nothing by the time it is refused, and a job reading a table never overwrites the
files it is reading.

Any URI Spark reads works as the lake (``s3a://bucket/ohlcv`` with the cluster's Hadoop settings); the
default is ``.lake/`` in the checkout.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from training.infra import settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

BUCKETS = 32  # about 250 symbols per bucket at 8,000 symbols: files of a few MB to a few hundred
BUCKET = "bucket"
BARS = "bars"
FEATURES = "features"
STAGING = "_staging"

BAR_SCHEMA = (
    "symbol string, event_timestamp timestamp, trade_date date, open double, high double, low double, "
    "close double, volume double, adj_open double, adj_high double, adj_low double, adj_close double, "
    "adj_volume double, created_timestamp timestamp"
)


def table_uri(name: str) -> str:
    return f"{settings.lake_uri()}/{name}"


def features_source_query() -> str:
    """The Feast source of the lake's feature views: the PostgreSQL profile's query over the lake's table."""
    from training.indicators.feature_table import feature_source_query

    return feature_source_query(f"parquet.`{table_uri(FEATURES)}`", row_version="unix_micros(created_timestamp)")


def bucket_of(symbol: Column) -> Column:
    """The bucket of a symbol: a stable hash (Spark's xxhash64, the same on every engine and run)."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(symbol), F.lit(BUCKETS)).cast("int")


def read_table(spark: SparkSession, name: str, schema: str) -> DataFrame:
    """The table's rows (without the bucket column), or no rows of ``schema`` when it was never written."""
    uri = table_uri(name)
    if not _exists(spark, uri):
        return spark.createDataFrame([], schema)
    return spark.read.parquet(uri).drop(BUCKET)


def replace_buckets(rows: DataFrame, name: str) -> None:
    """Write ``rows`` as the whole content of every bucket they fall in; other buckets are left as they are.

    ``rows`` must not read the table itself (stage them first, see :func:`staged`).
    """
    with_bucket = rows.withColumn(BUCKET, bucket_of(rows["symbol"]))
    (
        with_bucket.repartition(BUCKET)
        .sortWithinPartitions("symbol", "event_timestamp")
        .write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy(BUCKET)
        .parquet(table_uri(name))
    )


@contextmanager
def staging(spark: SparkSession) -> Iterator[str]:
    """A fresh folder under the lake's ``_staging/`` for one command's intermediate files, removed afterwards."""
    uri = f"{table_uri(STAGING)}/{uuid.uuid4().hex}"
    try:
        yield uri
    finally:
        _remove(spark, uri)


def staged(spark: SparkSession, rows: DataFrame, uri: str) -> DataFrame:
    """``rows`` computed once into ``uri`` and read back: later steps read the files, not the plan again."""
    rows.write.mode("overwrite").parquet(uri)
    return spark.read.parquet(uri)


def _local(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    return None if "://" in uri else Path(uri)


def _exists(spark: SparkSession, uri: str) -> bool:
    local = _local(uri)
    if local is not None:
        return local.is_dir() and any(local.rglob("*.parquet"))
    from pyspark.errors import AnalysisException

    try:
        spark.read.parquet(uri).limit(0).collect()
    except AnalysisException:  # PATH_NOT_FOUND, or no files yet
        return False
    return True


def _remove(spark: SparkSession, uri: str) -> None:
    local = _local(uri)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
        return
    jvm = getattr(spark, "_jvm", None)  # a classic session: Hadoop's FileSystem removes remote folders
    if jvm is not None:
        path = jvm.org.apache.hadoop.fs.Path(uri)
        path.getFileSystem(spark._jsc.hadoopConfiguration()).delete(path, True)
