"""Scaler: the saved RobustScaler parameters equal a fit on the training rows alone.

A scaler fitted on validation rows too carries their medians and quantiles into every training row; the
refit here must reproduce ``metadata["scaler"]`` from the ``train`` rows, to relative 1e-9. On a mismatch
the report says which rows the saved parameters do fit (all rows, train + validation), when it can tell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.dataset.scaler import fit_robust_scaler
from training.leakage.panel import RTOL, mismatch
from training.leakage.result import CheckResult

NAME = "scaler"


def _params(fitted: dict, features: list[str]) -> np.ndarray:
    return np.array(
        [[fitted["center"].get(f, np.nan) for f in features], [fitted["scale"].get(f, np.nan) for f in features]]
    )


def _fitted_on(dataset: Dataset, saved: np.ndarray) -> str | None:
    """Which other row set the saved parameters were fitted on, if one of the usual suspects matches."""
    frame, features = dataset.frame, dataset.features
    roles = frame["split"].astype(str)
    for label, mask in (("all rows", roles == roles), ("train + validation rows", roles.isin(["train", "validation"]))):
        if not mismatch(_params(fit_robust_scaler(frame.loc[mask, features]), features), saved).any():
            return label
    return None


def check_scaler(dataset: Dataset) -> CheckResult:
    features = dataset.features
    stored = dataset.metadata.get("scaler")
    train = dataset.rows("train")[features]
    description = (
        f"saved RobustScaler center/scale of {len(features)} features = a fit on the {len(train):,} training rows"
    )
    if not stored or "center" not in stored or "scale" not in stored:
        return CheckResult.verdict(NAME, description, {}, message="the dataset metadata has no scaler parameters")
    saved = _params(stored, features)
    refit = _params(fit_robust_scaler(train), features)
    bad = mismatch(refit, saved)
    offending = pd.DataFrame(
        [
            {"feature": features[j], "parameter": ("center", "scale")[i], "saved": saved[i, j], "refit": refit[i, j]}
            for i, j in zip(*np.nonzero(bad), strict=True)
        ]
    )
    problems = []
    if stored.get("rows") not in (None, len(train)):
        problems.append(f"saved scaler says it was fitted on {stored['rows']} rows, the dataset has {len(train)}")
    if stored.get("fitted_on") not in (None, "train"):
        problems.append(f"saved scaler says it was fitted on {stored['fitted_on']!r}")
    if bad.any():
        suspect = _fitted_on(dataset, saved)
        problems.append(
            f"{int(bad.sum())} saved parameters differ from a fit on the training rows (relative {RTOL:g})"
            + (f"; they equal a fit on {suspect}" if suspect else "")
        )
    counts = {"features": len(features), "training_rows": len(train), "parameters_differing": int(bad.sum())}
    return CheckResult.verdict(NAME, description, counts, offending, "; ".join(problems))
