"""Entity, source, feature views and feature services of the technical indicators.

Schemas are generated from the definition table (training/indicators/definitions.py): one feature view
per family, an on-demand view turning level features into scale-free forms, and two services:
``technical_indicators_v1`` (the 23 as defined) and ``technical_model_v1`` (what the model sees:
scale-free forms plus the features that are scale-free already). Training and serving read the same
service, so they share every transformation.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from feast import Entity, FeatureService, FeatureView, Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, UnixTimestamp
from feast.value_type import ValueType

from training.contract import AUDIT_FEATURE, DEFAULT_FEATURE_SERVICE
from training.engines import current_engine
from training.indicators.definitions import INDICATORS, REFERENCE_COLUMNS, Family, by_family
from training.indicators.feature_table import AUDIT_VIEW, VIEW_BAR_FIELDS, VIEW_VERSION_FIELDS

if TYPE_CHECKING:
    pass

symbol = Entity(
    name="symbol",
    join_keys=["symbol"],
    value_type=ValueType.STRING,
    description="Exchange ticker, upper case (AAPL, MSFT, ...)",
)


# One row per (symbol, bar) stamped at the bar's session close. `bar_timestamp` repeats the row's own
# event timestamp as a value, so every joined row carries the time it describes: the audit checks it is
# never after the entity timestamp, and online serving reports how old the features are. The other views
# carry the same stamp as `<view>_bar_timestamp`, so serving can tell a row mixing two bars, and every view
# carries its row's version as `<view>_row_version`, so serving can tell a row mixing two versions of one bar.
technical_indicators_source = current_engine().feature_source()

# Daily bars are 1 day apart on trading days, 3 over a weekend, 4 over a long holiday weekend, and 7
# across the longest NYSE closure of recent decades (2001-09-10 close to the 2001-09-17 session). Seven
# days keeps a bar valid across all of those and expires it before a second stale week could be served.
BAR_TTL = timedelta(days=7)

AUDIT_FIELD = Field(name=AUDIT_FEATURE, dtype=UnixTimestamp, description="event timestamp of the joined bar")


def _bar_field(family: Family) -> Field:
    """The view's own copy of its bar's timestamp: serving refuses a row whose views describe different bars.

    Not in the model's service (its inputs and the dataset stay as they were): predict reads it beside it.
    """
    return Field(name=VIEW_BAR_FIELDS[family], dtype=UnixTimestamp, description=f"event timestamp of the {family} bar")


def _version_field(family: Family) -> Field:
    """The view's copy of its row's version: serving refuses a row whose views hold two versions of one bar.

    Not in the model's service either (the dataset's fingerprint stays as it was).
    """
    return Field(
        name=VIEW_VERSION_FIELDS[family],
        dtype=Int64,
        description=f"created_timestamp of the {family} row in microseconds: renewed when its values change",
    )


def _family_view(family: Family) -> FeatureView:
    schema = [Field(name=i.name, dtype=Float64, description=i.description) for i in by_family(family)]
    schema += [
        Field(name=column, dtype=Float64, description=f"adjusted {column} the indicators were computed from")
        for column, owner in REFERENCE_COLUMNS.items()
        if owner == family
    ]
    schema.append(AUDIT_FIELD if family == AUDIT_VIEW else _bar_field(family))
    schema.append(_version_field(family))
    return FeatureView(
        name=family,
        entities=[symbol],
        ttl=BAR_TTL,
        schema=schema,
        online=True,
        source=technical_indicators_source,
        description=f"{family} indicators of daily bars",
        tags={"family": family},
    )


trend = _family_view("trend")
momentum = _family_view("momentum")
volatility = _family_view("volatility")
volume = _family_view("volume")
price_action = _family_view("price_action")
FAMILY_VIEWS = {view.name: view for view in (trend, momentum, volatility, volume, price_action)}

LEVEL_INDICATORS = [i for i in INDICATORS if i.scale_free != "already"]


@on_demand_feature_view(
    sources=list(FAMILY_VIEWS.values()),
    # No field descriptions here: Feast checks this schema against the inferred one by equality.
    schema=[Field(name=i.model_feature, dtype=Float64) for i in LEVEL_INDICATORS],
    mode="python",
    description="Level features (price or volume units) divided by the bar's close or volume (NaN when it is 0)",
)
def scale_free_indicators(inputs: dict[str, Any]) -> dict[str, Any]:
    """Level indicators as distances from (``relative``) or fractions of (``ratio``) the bar's close/volume.

    A zero-volume bar gives NaN volume forms, never inf: training drops the row and serving refuses it.
    """
    from training.indicators.scale_free import scale_free_forms

    return scale_free_forms(inputs)


def _already_scale_free(view: FeatureView) -> list[str]:
    return [i.name for i in INDICATORS if i.family == view.name and i.scale_free == "already"]


technical_indicators_v1 = FeatureService(
    name="technical_indicators_v1",
    features=[
        *(view[[i.name for i in by_family(view.name)]] for view in (trend, momentum, volatility, volume)),
        price_action[[*(i.name for i in by_family("price_action")), AUDIT_FEATURE]],
    ],
    description="The 23 technical indicators as defined (level features in price units)",
)

technical_model_v1 = FeatureService(
    name=DEFAULT_FEATURE_SERVICE,
    features=[
        scale_free_indicators,
        *(view[_already_scale_free(view)] for view in (momentum, volatility, volume)),
        price_action[[*_already_scale_free(price_action), AUDIT_FEATURE]],
    ],
    description="The model's default inputs: every feature in a scale-free form, comparable across symbols",
)
