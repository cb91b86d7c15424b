"""What both as-of stores share: a ``get_historical_features`` request, the checks every plan starts with,
the configuration field that ties a resolved feature_store.yaml to the environment, and the fallback to
Feast's stock store for whatever a sort-merge cannot answer exactly.

Each store decides with its own engine (column types on PostgreSQL, a Spark frame on the lake) between these
shared steps, and :func:`answer` hands an :class:`~training.feast_store.plan.Unsupported` request, with its
reason logged, to the stock store's own ``get_historical_features``, unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from feast.errors import FeastEntityDFMissingColumnsError
from feast.infra.offline_stores import offline_utils
from feast.repo_config import FeastConfigBaseModel
from pydantic import StrictStr, model_validator

from training.feast_store.plan import Joins, Unsupported, join_groups

if TYPE_CHECKING:
    from feast.feature_view import FeatureView
    from feast.infra.offline_stores.offline_store import OfflineStore, RetrievalJob
    from feast.infra.registry.base_registry import BaseRegistry
    from feast.repo_config import RepoConfig

log = logging.getLogger(__name__)
Plan = TypeVar("Plan")


class ResolvedForEnvironment(FeastConfigBaseModel):
    """``resolved_for``: set in a resolved feature_store.yaml, the stores it was resolved for. Loading a config
    compares it with the environment (no file is written here) and refuses a stale one in one line."""

    resolved_for: StrictStr | None = None

    @model_validator(mode="after")
    def _still_resolved_for_this_environment(self) -> ResolvedForEnvironment:
        from training.feast_store.repository import check_resolved_for

        check_resolved_for(self.resolved_for)
        return self


@dataclass(frozen=True)
class HistoricalRequest:
    """The arguments of ``OfflineStore.get_historical_features`` as Feast passes them."""

    config: RepoConfig
    feature_views: list[FeatureView]
    feature_refs: list[str]
    entity_df: Any  # a pandas frame, an SQL query, None (a date range) or an engine's own frame
    registry: BaseRegistry
    project: str
    full_feature_names: bool = False
    filter_by_created_timestamp: bool = False
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def refusal(self) -> Unsupported | None:
        """What no sort-merge answers: date ranges, no entity rows."""
        if self.kwargs.get("start_date") or self.kwargs.get("end_date") or self.entity_df is None:
            return Unsupported("a start_date/end_date range instead of entity rows")
        if isinstance(self.entity_df, pd.DataFrame) and self.entity_df.empty:
            return Unsupported("empty entity dataframe")
        return None

    def entity_columns(self, schema: Mapping[str, Any]) -> tuple[str, set[str]]:
        """The entity rows' event timestamp column and join keys, all present (else Feast's own error)."""
        ts_column = offline_utils.infer_event_timestamp_from_entity_df(dict(schema))
        join_keys = offline_utils.get_expected_join_keys(self.project, self.feature_views, self.registry)
        missing = ({ts_column} | join_keys) - set(schema)
        if missing:
            raise FeastEntityDFMissingColumnsError({ts_column, *join_keys}, missing)
        return ts_column, join_keys

    def joins(self, bounds: tuple[datetime, datetime], schema: Mapping[str, Any]) -> Joins | Unsupported:
        """The as-of joins the request needs, from Feast's own query contexts over the entity rows' range."""
        contexts = offline_utils.get_feature_view_query_context(
            self.feature_refs, self.feature_views, self.registry, self.project, bounds
        )
        joins = join_groups(contexts, self.feature_views, self.full_feature_names)
        if isinstance(joins, Unsupported):
            return joins
        if set(joins.outputs) & set(schema):
            return Unsupported("a feature shares its name with an entity dataframe column")
        return joins


def answer(
    stock: type[OfflineStore],
    request: HistoricalRequest,
    decision: Plan | Unsupported,
    job: Callable[[Plan], RetrievalJob],
) -> RetrievalJob:
    """The sort-merge's job for a plan; for an :class:`Unsupported` request, the stock store's answer."""
    if not isinstance(decision, Unsupported):
        return job(decision)
    log.info("get_historical_features handed to Feast's stock %s: %s", stock.__name__, decision.reason)
    return stock.get_historical_features(
        request.config,
        request.feature_views,
        request.feature_refs,
        request.entity_df,
        request.registry,
        request.project,
        request.full_feature_names,
        request.filter_by_created_timestamp,
        **request.kwargs,
    )
