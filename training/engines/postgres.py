"""The PostgreSQL engine: bars and features in PostgreSQL (TimescaleDB hypertables when available), the
per-symbol kernels run here, one partition of whole symbols at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.indicators.feature_table import FEATURE_SOURCE_QUERY, FEATURES_TABLE
from training.infra import db

if TYPE_CHECKING:
    import pandas as pd

    from training.config import Config
    from training.dataset.artifact import Dataset
    from training.indicators.backfill import FeaturesResult
    from training.ingestion.load_rules import IngestResult

# The newest row of each symbol, as the Feast source (and so materialize) sees it: one probe of the
# (symbol, event_timestamp) index per symbol, not a sort of every row (a universe has millions).
_LATEST_ROWS = f"""
SELECT newest.*
FROM unnest(%(symbols)s::text[]) AS wanted(symbol)
CROSS JOIN LATERAL (
    SELECT * FROM ({FEATURE_SOURCE_QUERY}) AS source
    WHERE source.symbol = wanted.symbol
    ORDER BY source.event_timestamp DESC, source.created_timestamp DESC
    LIMIT 1
) AS newest
"""


class PostgresEngine:
    name = "postgres"

    def features_table(self) -> str:
        return FEATURES_TABLE

    def ingest(self, chunks: Iterable[pd.DataFrame], allow_mixed_adjustment: bool = False) -> IngestResult:
        from training.ingestion.upsert import upsert_chunks

        return upsert_chunks(chunks, allow_mixed_adjustment=allow_mixed_adjustment)

    def compute_features(
        self, symbols: Sequence[str] | None, start: date | None, end: date | None, full: bool
    ) -> FeaturesResult:
        from training.indicators.backfill import compute_features

        return compute_features(symbols, start=start, end=end, full=full, progress=True)

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
        from training.dataset.builder import build_dataset

        return build_dataset(
            config, store, out, symbols=symbols, start=start, end=end, progress=progress, known_at=known_at
        )

    def feature_symbols(self) -> list[str]:
        with db.connect() as conn:
            return db.table_symbols(conn, FEATURES_TABLE)

    def latest_feature_rows(self, symbols: list[str]) -> pd.DataFrame:
        from training.indicators.feature_table import VIEW_BAR_FIELDS

        with db.connect() as conn:
            return db.copy_out(
                conn, _LATEST_ROWS, {"symbols": symbols}, parse_dates=["event_timestamp", *VIEW_BAR_FIELDS.values()]
            )

    def feature_source(self) -> Any:
        from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

        return PostgreSQLSource(
            name="technical_indicators_source",
            query=FEATURE_SOURCE_QUERY,
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
            description="features.technical_indicators, written by `python -m training compute-features`",
        )

    def require(self, command: str) -> None:
        """Every command runs on PostgreSQL."""
