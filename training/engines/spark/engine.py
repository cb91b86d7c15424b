"""The Spark engine: bars and features as Parquet tables in the lake (OHLCV_LAKE), the per-symbol kernels run
inside Spark partitions of whole symbols, wherever Spark's own settings say (:mod:`.session`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from training.config import Config
    from training.dataset.artifact import Dataset
    from training.indicators.backfill import FeaturesResult
    from training.ingestion.load_rules import IngestResult

# Commands that read or write PostgreSQL's own tables (the scores table) and have no lake counterpart yet.
_POSTGRES_ONLY = ("update", "replay")


class SparkEngine:
    name = "spark"

    @property
    def spark(self):
        from training.engines.spark.session import session

        return session()

    def features_table(self) -> str:
        from training.engines.spark import lake

        return f"the lake's features table ({lake.table_uri(lake.FEATURES)})"

    def ingest(self, chunks: Iterable[pd.DataFrame], allow_mixed_adjustment: bool = False) -> IngestResult:
        from training.engines.spark.lake_ingest import upsert_lake

        return upsert_lake(self.spark, _without_as_of(chunks), allow_mixed_adjustment=allow_mixed_adjustment)

    def compute_features(
        self, symbols: Sequence[str] | None, start: date | None, end: date | None, full: bool
    ) -> FeaturesResult:
        from training.engines.spark.lake_features import compute_lake_features

        return compute_lake_features(
            self.spark, None if symbols is None else list(symbols), start=start, end=end, full=full
        )

    def build_dataset(
        self,
        config: Config,
        store: Any,
        out: Path,
        *,
        symbols: list[str] | None,
        start: date | None,
        end: date | None,
        progress: Callable[[str], None],
        known_at: datetime | None = None,
    ) -> Dataset:
        from training.engines.spark.lake_dataset import build_lake_dataset

        return build_lake_dataset(
            config, store, out, symbols=symbols, start=start, end=end, progress=progress, known_at=known_at
        )

    def feature_symbols(self) -> list[str]:
        from training.engines.spark.lake_features import feature_symbols

        return feature_symbols(self.spark)

    def latest_feature_rows(self, symbols: list[str]) -> pd.DataFrame:
        from training.engines.spark.lake_features import latest_feature_rows

        return latest_feature_rows(self.spark, symbols)

    def feature_source(self) -> Any:
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        from training.engines.spark.lake import features_source_query

        return SparkSource(
            name="technical_indicators_source",
            query=features_source_query(),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
            description="the lake's features table, written by compute-features with OHLCV_ENGINE=spark",
        )

    def require(self, command: str) -> None:
        if command in _POSTGRES_ONLY:
            raise InputError(
                f"{command} reads PostgreSQL's tables and does not run on OHLCV_ENGINE=spark yet; the lake profile "
                "covers ingest, compute-features, build-dataset, verify-leakage, train, Feast's historical "
                "retrieval, materialize and check-online (unset OHLCV_ENGINE)"
            )


def _without_as_of(chunks: Iterable[pd.DataFrame]) -> Iterable[pd.DataFrame]:
    """The chunks, refused (before the lake's tables are touched) when the file has a vendor's as-of column:
    the lake stamps versions with its own clock only, and silently ignoring the file's times would record
    knowledge times the vendor contradicts (docs/known-at.md)."""
    from training.ingestion.upsert import AS_OF

    for chunk in chunks:
        if AS_OF in chunk.columns:
            raise InputError(
                "the file has an as-of column (As Of / Knowledge Time / Known At): the lake does not read a vendor's "
                "knowledge times yet; ingest it with OHLCV_ENGINE unset (PostgreSQL) or drop the column"
            )
        yield chunk
