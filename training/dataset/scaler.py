"""RobustScaler parameters fitted on training rows only, stored as JSON with the dataset.

The trainer refits its scaler inside every fold (a Pipeline); these saved parameters let an auditor check
that the dataset's own preprocessing never saw validation rows, and let a consumer scale without refitting.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def fit_robust_scaler(train: pd.DataFrame) -> dict[str, Any]:
    """center_ and scale_ of sklearn's RobustScaler fitted on ``train``, keyed by feature name."""
    from sklearn.preprocessing import RobustScaler

    scaler = RobustScaler().fit(train.to_numpy(dtype=np.float64))
    return {
        "type": "sklearn.preprocessing.RobustScaler",
        "fitted_on": "train",
        "rows": len(train),
        "center": dict(zip(train.columns, scaler.center_.tolist(), strict=True)),
        "scale": dict(zip(train.columns, scaler.scale_.tolist(), strict=True)),
    }


def transform(frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Apply saved parameters: (x - center) / scale, column by column."""
    center, scale = pd.Series(params["center"]), pd.Series(params["scale"])
    return (frame[center.index] - center) / scale
