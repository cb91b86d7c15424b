"""The 23 indicators on Spark: the one-box kernel (:func:`training.indicators.compute.compute_panel`) run once
per symbol inside ``groupBy("symbol").applyInPandas``, so both engines compute the same numbers by
construction: each call sees one symbol's whole history, oldest first, exactly as a one-box partition does.

Bars arrive with Spark's timestamps (UTC instants; the session's time zone is UTC, see
:mod:`training.engines.spark.session`); the kernel's output carries the bar's stamp back unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from training.indicators.compute import compute_panel, input_columns
from training.indicators.definitions import FEATURE_NAMES, REFERENCE_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

BAR_COLUMNS = ("symbol", "event_timestamp", *input_columns())
OUTPUT_COLUMNS = ("symbol", "event_timestamp", *FEATURE_NAMES, *REFERENCE_COLUMNS)
OUTPUT_SCHEMA = ", ".join(
    ["symbol string", "event_timestamp timestamp", *(f"`{name}` double" for name in OUTPUT_COLUMNS[2:])]
)


def symbol_features(bars: pd.DataFrame) -> pd.DataFrame:
    """One symbol's feature rows (plus the reference columns the store keeps), oldest first."""
    bars = bars.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
    rows = compute_panel(bars)
    for column in REFERENCE_COLUMNS:  # the bar values stored beside the features, as backfill stores them
        rows[column] = bars[column].to_numpy()
    return rows[list(OUTPUT_COLUMNS)]


def compute_on_spark(bars: DataFrame) -> DataFrame:
    """Feature rows of every symbol of ``bars`` (columns :data:`BAR_COLUMNS`, adjusted), one per bar."""
    return bars.select(*BAR_COLUMNS).groupBy("symbol").applyInPandas(symbol_features, schema=OUTPUT_SCHEMA)
