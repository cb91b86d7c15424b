"""The lake's bars as the one-box readers see PostgreSQL's (:mod:`training.dataset.offline_bars`): adjusted
prices (``COALESCE(adj_*, raw)``), the same refusals, and pandas frames of the same dtypes, so the builder's
and the audit's kernels get the same input on either engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from training.contract import INGEST
from training.dataset.offline_bars import checked_against, features_behind_error, missing_features_error
from training.engines.spark import lake
from training.engines.spark.lake_versions import read_versions

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

ADJUSTED_PRICES = [f"COALESCE(adj_{c}, {c}) AS {c}" for c in ("open", "high", "low", "close", "volume")]
ADJUSTED = ", ".join(ADJUSTED_PRICES)
BAR_COLUMNS = ("symbol", "event_timestamp", "trade_date", "open", "high", "low", "close", "volume")


def adjusted_bars(spark: SparkSession, symbols: Sequence[str] | None = None) -> DataFrame:
    """The stored bars of ``symbols`` (all when None) with adjusted prices, as a Spark frame (as known at the
    enclosing :func:`training.infra.versions.knowing` time, when in one)."""
    from pyspark.sql import functions as F

    bars = read_versions(spark, lake.BARS, lake.BAR_SCHEMA)
    if symbols is not None:
        bars = bars.where(F.col("symbol").isin(list(symbols)))
    return bars.selectExpr("symbol", "event_timestamp", "trade_date", *ADJUSTED_PRICES)


def bar_counts(spark: SparkSession, symbols: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """(symbol, bars) of the lake's bars of ``symbols`` (all when None), in sorted symbol order."""
    rows = adjusted_bars(spark, symbols).groupBy("symbol").count().collect()
    return sorted((r[0], int(r[1])) for r in rows)


def checked_symbols(spark: SparkSession, symbols: Sequence[str] | None) -> list[str] | None:
    """``symbols`` normalised and sorted (None: every symbol), refused when unknown or when the lake has no bars."""
    known = [symbol for symbol, _ in bar_counts(spark)]
    empty = f"the lake's bars table ({lake.table_uri(lake.BARS)}) is empty: run `{INGEST}` with OHLCV_ENGINE=spark"
    return checked_against(symbols, known, empty)


def read_bars(spark: SparkSession, symbols: Sequence[str] | None) -> pd.DataFrame:
    """The adjusted bars of ``symbols`` in the dtypes :func:`training.dataset.offline_bars.read_bars` returns:
    event_timestamp tz-aware UTC (ns), trade_date as dates, sorted by (symbol, event_timestamp)."""
    return to_pandas(adjusted_bars(spark, symbols)).sort_values(["symbol", "event_timestamp"]).reset_index(drop=True)


def to_pandas(frame: DataFrame) -> pd.DataFrame:
    """``frame`` collected, its timestamps as tz-aware UTC nanoseconds (Spark hands them back naive, in its
    session's zone, which is UTC)."""
    import pandas as pd

    out = frame.toPandas()
    for name in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[name].dtype):
            out[name] = pd.to_datetime(out[name], utc=True).astype("datetime64[ns, UTC]")
    return out


def require_features(spark: SparkSession, bars: DataFrame) -> None:
    """Refuse ``bars`` whose symbol has no feature row in the lake, or that have none at their own stamp yet
    (Feast would silently join such a decision to an older bar's row within the TTL)."""
    from pyspark.sql import functions as F

    from training.engines.spark.lake_features import FEATURE_SCHEMA

    stored = read_versions(spark, lake.FEATURES, FEATURE_SCHEMA).select("symbol", "event_timestamp")
    missing = bars.select("symbol").distinct().join(stored.select("symbol").distinct(), "symbol", "left_anti")
    missing_symbols = sorted(r[0] for r in missing.collect())
    if missing_symbols:
        raise missing_features_error(missing_symbols, lake.table_uri(lake.FEATURES))
    behind = (
        bars.join(stored, ["symbol", "event_timestamp"], "left_anti")
        .groupBy("symbol")
        .agg(F.count("*"), F.min("trade_date"))
        .orderBy("symbol")
        .collect()
    )
    if behind:
        raise features_behind_error([(r[0], int(r[1]), r[2]) for r in behind])
