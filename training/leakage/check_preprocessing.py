"""Preprocessing: the scaler fitted in each fold of a training run saw that fold's fit rows only.

Audited from what the run recorded (``cv_splits.json``, logged by ``train``): per fold the rows the scaler
and trees were fitted on and the rows early stopping watched must be training rows of the fold, never
its test rows, and the saved RobustScaler parameters must equal the median and inter-quartile range of
exactly the fit rows (computed here with numpy, a feature column at a time, to relative 1e-9; a zero range
scales by 1, as scikit-learn does). The final model's scaler likewise, over the training rows only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.leakage.check_cv import read_fold_columns, training_order
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


def _membership(name: str, fitted: Mapping[str, Any], train: np.ndarray | None, test: np.ndarray) -> list[str]:
    """Fit and early-stopping rows are training rows of the fold, never its scored rows."""
    problems = []
    for label, key in (("fit", "fit"), ("early-stopping", "early_stopping")):
        rows = recorded_positions(fitted[key])
        if len(np.intersect1d(rows, test)):
            problems.append(f"{name}: {len(np.intersect1d(rows, test))} {label} rows are scored rows")
        if train is not None and len(np.setdiff1d(rows, train)):
            problems.append(f"{name}: {len(np.setdiff1d(rows, train))} {label} rows are not training rows of the fold")
    if not len(fitted["fit"]):
        problems.append(f"{name}: no fit rows recorded")
    return problems


def _scaler_problems(dataset: Dataset, order: np.ndarray, features: list[str],
                     fits: list[tuple[str, Mapping[str, Any]]]) -> list[str]:  # fmt: skip
    """Each fit's saved scaler against the median and IQR of its fit rows, a feature column at a time (memory
    holds one column of the training rows, not the matrix)."""
    bad = {name: 0 for name, _ in fits}
    for j, feature in enumerate(features):
        column = dataset.read([feature])[feature].to_numpy(dtype=np.float64)[order]
        for name, fitted in fits:
            fit = recorded_positions(fitted["fit"])
            if not len(fit) or fit.max() >= len(column):
                continue  # reported by _membership, or refused below
            center, scale = robust_parameters(column[fit])
            saved = fitted["scaler"]
            bad[name] += int(mismatch(center, saved["center"][j]) | mismatch(scale, saved["scale"][j]))
        del column
    problems = []
    for name, fitted in fits:
        fit = recorded_positions(fitted["fit"])
        if len(fit) and fit.max() >= len(order):
            problems.append(f"{name}: fit rows beyond the dataset's {len(order):,} training rows")
        elif bad[name]:
            problems.append(f"{name}: {bad[name]} scaler parameters differ from a fit on its {len(fit)} fit rows "
                            f"(relative {RTOL:g})")  # fmt: skip
    return problems


def check_preprocessing(dataset: Dataset, record: Mapping[str, Any]) -> CheckResult:
    features = list(record.get("features") or dataset.features)
    folds = list(record.get("folds", []))
    description = (
        f"{len(folds)} folds + the final fit of run {record.get('run_id', '?')}: scaler and early "
        f"stopping fitted on training rows only, scaler = median/IQR of the recorded fit rows"
    )
    order = training_order(read_fold_columns(dataset))
    problems = []
    if record.get("dataset_fingerprint") != dataset.metadata.get("fingerprint"):
        problems.append(f"the run trained on dataset {str(record.get('dataset_fingerprint'))[:12]}, "
                        f"not this one ({str(dataset.metadata.get('fingerprint'))[:12]})")  # fmt: skip
    else:
        fits = [(f"fold {fold['fold']}", fold) for fold in folds] + [("final model", record["final"])]
        for fold in folds:
            test, train = recorded_positions(fold["test"]), recorded_positions(fold["train"])
            problems += _membership(f"fold {fold['fold']}", fold, train, test)
        problems += _membership("final model", record["final"], None, np.array([], dtype=np.int64))
        problems += _scaler_problems(dataset, order, features, fits)
    counts = {"folds": len(folds), "training_rows": len(order), "features": len(features)}
    table = pd.DataFrame({"problem": problems})
    return CheckResult.verdict(NAME, description, counts, table, "; ".join(problems[:5]))
