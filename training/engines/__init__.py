"""Where bars and features live and where per-symbol work runs: one interface, two implementations.

Every stage that touches stored bars or features asks :func:`current_engine` and calls the interface; the
choice between PostgreSQL (:mod:`training.engines.postgres`) and Spark over the lake
(:mod:`training.engines.spark`) is made here, once, from OHLCV_ENGINE. The rules both engines apply (the
adjustment merge and the refusals of a load, the staleness of feature rows, the checks of a request) live
with their stage and are written once; an implementation holds only what differs: how rows are read and
written, and where the per-symbol kernels run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd

    from training.config import Config
    from training.dataset.artifact import Dataset
    from training.indicators.backfill import FeaturesResult
    from training.ingestion.load_rules import IngestResult


class Engine(Protocol):
    """The stages' access to the offline store, as each engine provides it."""

    name: str

    def features_table(self) -> str:
        """The feature table's name as reports and errors show it."""

    def ingest(self, chunks: Iterable[pd.DataFrame], allow_mixed_adjustment: bool = False) -> IngestResult:
        """Load validated bars (chunk by chunk, all or nothing) by the shared rules of training.ingestion."""

    def compute_features(
        self, symbols: Sequence[str] | None, start: date | None, end: date | None, full: bool
    ) -> FeaturesResult:
        """Compute the stale feature rows of ``symbols`` (all when None) and write the new or changed ones."""

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
        """Label, join point in time through Feast, weigh and split into the artifact ``out``: the same
        artifact, row for row, on either engine; ``known_at``: from the versions known then."""

    def feature_symbols(self) -> list[str]:
        """The sorted symbols that have feature rows (none when the table was never written)."""

    def latest_feature_rows(self, symbols: list[str]) -> pd.DataFrame:
        """The newest row of each symbol as the Feast source sees it: what materialize writes online."""

    def feature_source(self) -> Any:
        """The Feast data source every feature view reads."""

    def require(self, command: str) -> None:
        """Refuse, in one line, a command this engine does not run."""


IMPLEMENTATIONS = {
    "postgres": "training.engines.postgres:PostgresEngine",
    "spark": "training.engines.spark.engine:SparkEngine",
}


def current_engine() -> Engine:
    """The engine OHLCV_ENGINE names (default PostgreSQL): the one place the implementation is chosen."""
    from training.infra import environment

    module, name = IMPLEMENTATIONS[environment.engine()].split(":")
    return getattr(import_module(module), name)()
