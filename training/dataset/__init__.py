"""Stage 4, dataset: entity rows at bar closes, point-in-time features through Feast, the artifact on disk.

``builder`` joins the pieces (features, labels, weights, hold-out split) into one row per decision;
``artifact`` writes and reads the Parquet + JSON result, never pickle; ``profile_builder`` picks the builder
of the configured profile (the lake's runs on Spark and writes the same artifact).
"""

from collections.abc import Callable
from typing import Any


def profile_builder() -> Callable[..., Any]:
    """``builder.build_dataset``, or on the lake profile (OHLCV_ENGINE=spark) ``build_lake_dataset``: the same
    signature and the same artifact, row for row."""
    from training.infra.settings import engine

    if engine() == "spark":
        from training.spark.lake_dataset import build_lake_dataset

        return build_lake_dataset
    from training.dataset import builder

    return builder.build_dataset
