"""The 23 indicators computed on Spark (local[2]) equal the one-box job's, bit for bit, on the bundled data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.indicators.definitions import FEATURE_NAMES, REFERENCE_COLUMNS


def test_spark_features_equal_the_stored_ones_bit_for_bit(pipeline, spark):
    from training.dataset.offline_bars import load_bars
    from training.engines.spark.spark_indicators import BAR_COLUMNS, compute_on_spark
    from training.indicators.feature_table import FEATURES_TABLE
    from training.infra import db

    bars = load_bars()
    frame = spark.createDataFrame(bars[list(BAR_COLUMNS)])
    ours = compute_on_spark(frame).toPandas()
    ours["event_timestamp"] = pd.to_datetime(ours["event_timestamp"], utc=True)
    ours = ours.sort_values(["symbol", "event_timestamp"]).reset_index(drop=True)
    with db.connect() as conn:
        stored = db.copy_out(conn, f"SELECT * FROM {FEATURES_TABLE} ORDER BY symbol, event_timestamp", {},
                             parse_dates=["event_timestamp"])  # fmt: skip
    assert len(ours) == len(stored) == len(bars)
    np.testing.assert_array_equal(ours["symbol"].to_numpy(), stored["symbol"].to_numpy())
    np.testing.assert_array_equal(ours["event_timestamp"].array.asi8, stored["event_timestamp"].array.asi8)
    for name in (*FEATURE_NAMES, *REFERENCE_COLUMNS):
        np.testing.assert_array_equal(ours[name].to_numpy(), stored[name].to_numpy(dtype=np.float64), err_msg=name)
