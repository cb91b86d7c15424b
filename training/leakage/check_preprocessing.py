"""Preprocessing: the scaler fitted in each fold of a training run saw that fold's fit rows only.

Audited from what the run recorded (``cv_splits.json``, logged by ``train``): per fold the rows the scaler
and trees were fitted on and the rows early stopping watched must be training rows of the fold, never
its test rows, and the saved RobustScaler parameters must equal the median and inter-quartile range of
exactly the fit rows (computed here with numpy, to relative 1e-9; a zero range scales by 1, as
scikit-learn does). The final model's scaler likewise, over the training rows only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.leakage.check_cv import training_rows
from training.leakage.panel import RTOL, mismatch
from training.leakage.result import CheckResult

NAME = "preprocessing"


def recorded_positions(value: Sequence[Any]) -> np.ndarray:
    """Positions as a run records them: runs ``[first, last + 1)``, or (runs before these) a plain list."""
    if len(value) and isinstance(value[0], list | tuple):
        return np.concatenate([np.arange(first, end, dtype=np.int64) for first, end in value])
    return np.asarray(value, dtype=np.int64)


def robust_parameters(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RobustScaler's defaults, written out: center = median, scale = 75th - 25th percentile (0 -> 1)."""
    q25, median, q75 = np.percentile(X, [25, 50, 75], axis=0)
    scale = q75 - q25
    return median, np.where(scale == 0, 1.0, scale)


def _fold_problems(name: str, X: np.ndarray, fitted: Mapping[str, Any], train: np.ndarray | None,
                   test: np.ndarray) -> list[str]:  # fmt: skip
    fit, watch = recorded_positions(fitted["fit"]), recorded_positions(fitted["early_stopping"])
    problems = []
    for label, rows in (("fit", fit), ("early-stopping", watch)):
        if len(np.intersect1d(rows, test)):
            problems.append(f"{name}: {len(np.intersect1d(rows, test))} {label} rows are scored rows")
        if train is not None and len(np.setdiff1d(rows, train)):
            problems.append(f"{name}: {len(np.setdiff1d(rows, train))} {label} rows are not training rows of the fold")
    if len(fit) == 0:
        return [*problems, f"{name}: no fit rows recorded"]
    center, scale = robust_parameters(X[fit])
    saved = fitted["scaler"]
    bad = mismatch(center, np.asarray(saved["center"])) | mismatch(scale, np.asarray(saved["scale"]))
    if bad.any():
        problems.append(f"{name}: {int(bad.sum())} scaler parameters differ from a fit on its {len(fit)} fit rows "
                        f"(relative {RTOL:g})")  # fmt: skip
    return problems


def check_preprocessing(dataset: Dataset, record: Mapping[str, Any]) -> CheckResult:
    features = list(record.get("features") or dataset.features)
    rows = training_rows(dataset, features)
    X = rows[features].to_numpy(dtype=np.float64)
    description = (
        f"{len(record.get('folds', []))} folds + the final fit of run {record.get('run_id', '?')}: scaler and early "
        f"stopping fitted on training rows only, scaler = median/IQR of the recorded fit rows"
    )
    problems = []
    if record.get("dataset_fingerprint") != dataset.metadata.get("fingerprint"):
        problems.append(f"the run trained on dataset {str(record.get('dataset_fingerprint'))[:12]}, "
                        f"not this one ({str(dataset.metadata.get('fingerprint'))[:12]})")  # fmt: skip
    else:
        for fold in record.get("folds", []):
            test, train = recorded_positions(fold["test"]), recorded_positions(fold["train"])
            problems += _fold_problems(f"fold {fold['fold']}", X, fold, train, test)
        problems += _fold_problems("final model", X, record["final"], None, np.array([], dtype=np.int64))
    counts = {"folds": len(record.get("folds", [])), "training_rows": len(rows), "features": len(features)}
    table = pd.DataFrame({"problem": problems})
    return CheckResult.verdict(NAME, description, counts, table, "; ".join(problems[:5]))
