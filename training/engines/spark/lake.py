"""The lake profile's tables: bars and features as Parquet datasets under OHLCV_LAKE, partitioned by symbol bucket.

A table is a folder of Parquet files hive-partitioned by ``bucket`` (a hash of the symbol), so a symbol's
rows are always in one bucket and a write replaces only the buckets it touched (Spark's dynamic partition
overwrite: each bucket's new files are written aside and moved in at commit). Writers compute their result
completely, from what they read, into the lake's staging folder first, and only then replace buckets: a
refused input has written nothing by the time it is refused, and a job reading a table never overwrites the
files it is reading.

Beside each table, its history dataset keeps every version a write replaced or removed
(:mod:`training.engines.spark.lake_versions`).

Any URI Spark reads works as the lake (``file:///data/ohlcv``, ``s3a://bucket/ohlcv`` with the cluster's
Hadoop settings); the default is ``.lake/`` in the checkout. Nothing here touches the driver's disk: Spark
decides whether a table exists, and Hadoop's filesystem (or pyarrow's, from a Connect client) removes staging.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from training.errors import InputError
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


def sql_name(name: str) -> str:
    """The table as Spark SQL names it: its Parquet folder."""
    return f"parquet.`{table_uri(name)}`"


def features_source_query() -> str:
    """The Feast source of the lake's feature views: the PostgreSQL profile's query over the lake's table."""
    from training.indicators.feature_table import feature_source_query

    return feature_source_query(sql_name(FEATURES), row_version="unix_micros(created_timestamp)")


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


def exists(spark: SparkSession, name: str) -> bool:
    """Whether the table was ever written."""
    return _exists(spark, table_uri(name))


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
    remove = _remover(spark, uri)
    try:
        yield uri
    finally:
        remove()


def staged(spark: SparkSession, rows: DataFrame, uri: str) -> DataFrame:
    """``rows`` computed once into ``uri`` and read back: later steps read the files, not the plan again."""
    rows.write.mode("overwrite").parquet(uri)
    return spark.read.parquet(uri)


def _exists(spark: SparkSession, uri: str) -> bool:
    """Whether the table holds Parquet files: Spark lists and reads the folder on its own filesystem (no driver
    path, classic or Connect); a folder missing or without data files is "never written"."""
    from pyspark.errors import AnalysisException

    try:
        spark.read.parquet(uri).schema  # noqa: B018  (resolving the schema lists the files)
    except AnalysisException:  # PATH_NOT_FOUND, or no data files to infer a schema from
        return False
    return True


def _remover(spark: SparkSession, uri: str) -> Callable[[], None]:
    """How to remove ``uri``'s folder, found before anything is written there: Hadoop's filesystem on a classic
    session (any scheme the cluster reads), pyarrow's for the same URI from a Spark Connect client, which has
    no JVM. A lake the client cannot reach is refused here, in one line."""
    jvm = getattr(spark, "_jvm", None)
    if jvm is not None:
        path = jvm.org.apache.hadoop.fs.Path(uri)
        filesystem = path.getFileSystem(spark._jsc.hadoopConfiguration())
        return lambda: filesystem.delete(path, True)
    from pyarrow import ArrowInvalid, fs

    scheme, sep, rest = uri.partition("://")
    try:  # Hadoop's S3A names the same buckets pyarrow calls s3
        filesystem, path = fs.FileSystem.from_uri(f"{_PYARROW_SCHEMES.get(scheme, scheme)}://{rest}" if sep else uri)
    except (ArrowInvalid, ValueError, OSError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(
            f"OHLCV_LAKE={settings.lake_uri()}: a Spark Connect client removes the lake's staging folders with "
            f"pyarrow, which cannot reach it ({reason}); use a lake pyarrow reaches from here (a folder, file://, "
            "s3a://, gs://, abfs://, hdfs:// with libhdfs)"
        ) from None

    def remove() -> None:
        with suppress(FileNotFoundError):  # nothing was staged
            filesystem.delete_dir(path)

    return remove


_PYARROW_SCHEMES = {"s3a": "s3", "s3n": "s3"}
