"""Point-in-time features for an entity dataframe, through Feast and a feature service.

Feast returns, for each (symbol, event_timestamp), the newest feature row with
event_timestamp - TTL <= feature timestamp <= event_timestamp, so a decision at bar D's close sees bar D
and nothing later. ``bar_timestamp`` (the joined row's own timestamp) is kept as ``feature_timestamp``
for the audit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from training.contract import AUDIT_FEATURE, FEAST_APPLY
from training.dataset.offline_bars import require_features
from training.errors import InputError

if TYPE_CHECKING:
    from training.config import DecisionTimeConfig

ENTITY_ROW = "entity_row"


@dataclass(frozen=True)
class ServiceFeatures:
    """What a feature service yields: the model's inputs and the audit timestamp, plus its TTL."""

    name: str
    features: list[str]  # model inputs, in the service's order
    ttl_seconds: float | None  # the smallest TTL of the service's views (None: unlimited)


def describe_service(store, name: str) -> ServiceFeatures:
    from feast.errors import FeatureServiceNotFoundException

    try:
        service = store.get_feature_service(name)
    except FeatureServiceNotFoundException:
        known = ", ".join(s.name for s in store.list_feature_services()) or f"none (run `{FEAST_APPLY}`)"
        raise InputError(f"unknown feature service {name!r}; known: {known}") from None
    names = [f.name for projection in service.feature_view_projections for f in projection.features]
    ttls = [
        store.get_feature_view(p.name).ttl.total_seconds()
        for p in service.feature_view_projections
        if p.name in {v.name for v in store.list_feature_views()} and store.get_feature_view(p.name).ttl
    ]
    return ServiceFeatures(
        name=name, features=[n for n in names if n != AUDIT_FEATURE], ttl_seconds=min(ttls) if ttls else None
    )


def point_in_time_features(
    store, entities: pd.DataFrame, service: ServiceFeatures, decision: DecisionTimeConfig | None = None
) -> pd.DataFrame:
    """feature_timestamp and the service's features, one row per entity row, in the entity rows' order;
    ``decision`` enabled: the versions known at each row's decision time (:func:`retrieve`).

    A row number travels through Feast (extra entity columns are passed through) so the result is put back
    in order by position, whatever order the offline store returns, without a join on (symbol, time).
    Only the service's columns are converted from Arrow to pandas: the on-demand view's inputs are not.
    """
    require_features(pd.unique(entities["symbol"]).tolist())  # one line, not Feast's UndefinedTable
    request = pd.DataFrame(
        {
            "symbol": entities["symbol"].to_numpy(),
            "event_timestamp": entities["event_timestamp"].to_numpy(),
            ENTITY_ROW: np.arange(len(entities)),
        }
    )
    table = retrieve(store, request, service, decision).to_arrow()
    if AUDIT_FEATURE not in table.column_names:
        raise InputError(f"feature service {service.name!r} does not carry {AUDIT_FEATURE}; it is needed for the audit")
    frame = table.select([ENTITY_ROW, AUDIT_FEATURE, *service.features]).to_pandas()
    del table
    if len(frame) != len(entities) or frame[ENTITY_ROW].duplicated().any():
        raise InputError(f"the offline store returned {len(frame)} rows for {len(entities)} entity rows")
    frame = frame.sort_values(ENTITY_ROW, kind="stable").drop(columns=ENTITY_ROW).reset_index(drop=True)
    frame = frame.rename(columns={AUDIT_FEATURE: "feature_timestamp"})
    frame["feature_timestamp"] = pd.to_datetime(frame["feature_timestamp"], utc=True)
    return frame


def retrieve(store, entity_df: Any, service: ServiceFeatures, decision: DecisionTimeConfig | None = None) -> Any:
    """Feast's retrieval job for the service's features (both engines' builds call it). With decision time
    enabled, Feast's ``filter_by_created_timestamp`` under the configured publication lag: the as-of stores
    then join, for each row, the feature version usable at its own timestamp (docs/known-at.md)."""
    from training.feast_store.decision_time import deciding

    features = store.get_feature_service(service.name)
    if decision is None or not decision.enabled:
        return store.get_historical_features(entity_df=entity_df, features=features)
    with deciding(decision.lag):
        return store.get_historical_features(entity_df=entity_df, features=features, filter_by_created_timestamp=True)
