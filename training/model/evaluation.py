"""Scores of one set of predictions: classification metrics, information coefficient, backtest, baselines."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from training.model.backtest import Backtest, backtest, information_coefficient


def signal(proba: np.ndarray, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(score, position): binary trades long/flat on P(+1) > 0.5; multiclass long/short/flat on the argmax."""
    if len(classes) == 2:
        score = proba[:, 1]
        return score, (score > 0.5).astype(np.float64)
    index = {c: i for i, c in enumerate(classes)}
    score = proba[:, index[1]] - proba[:, index[-1]]
    return score, np.asarray(classes, dtype=np.float64)[proba.argmax(axis=1)]


def classification(y: np.ndarray, proba: np.ndarray, classes: list[int]) -> dict[str, Any]:
    """accuracy, F1, ROC AUC (NaN when the fold holds one class), log loss and the confusion matrix."""
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    binary = len(classes) == 2
    try:
        auc = skm.roc_auc_score(y, proba[:, 1]) if binary else skm.roc_auc_score(y, proba, multi_class="ovr")
    except ValueError:
        auc = float("nan")
    return {
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "f1": float(skm.f1_score(y, predicted, average="binary" if binary else "macro", zero_division=0)),
        "roc_auc": float(auc),
        "log_loss": float(skm.log_loss(y, np.clip(proba, 1e-15, 1 - 1e-15), labels=classes)),
        "confusion_matrix": skm.confusion_matrix(y, predicted, labels=classes).tolist(),
    }


def score(
    rows: pd.DataFrame, proba: np.ndarray, classes: list[int], cost_bps: float
) -> tuple[dict[str, Any], Backtest]:
    """Every metric of predictions ``proba`` on ``rows`` (which carry target, ret, next_ret, symbol, t0)."""
    strength, position = signal(proba, classes)
    result = classification(rows["target"].to_numpy(), proba, classes)
    result["information_coefficient"] = information_coefficient(strength, rows["ret"].to_numpy())
    trades = backtest(rows["symbol"], rows["event_timestamp"], position, rows["next_ret"].to_numpy(), cost_bps)
    result.update({f"backtest_{k}": v for k, v in trades.metrics().items()})
    return result, trades


def baselines(
    train_target: np.ndarray, rows: pd.DataFrame, classes: list[int], cost_bps: float
) -> dict[str, dict[str, Any]]:
    """Trivial models on the same rows: the training majority class, and buy-and-hold (always long)."""
    shares = np.array([(train_target == c).mean() for c in classes])
    # The majority model predicts the training class shares for every row: its argmax is the majority class.
    majority_scores = classification(rows["target"].to_numpy(), np.tile(shares, (len(rows), 1)), classes)
    return {
        "majority": majority_scores,
        "buy_and_hold": {f"backtest_{k}": v for k, v in buy_and_hold(rows, cost_bps).metrics().items()},
    }


def buy_and_hold(rows: pd.DataFrame, cost_bps: float) -> Backtest:
    """Always long every symbol: the trivial strategy a signal has to beat."""
    return backtest(rows["symbol"], rows["event_timestamp"], np.ones(len(rows)), rows["next_ret"].to_numpy(), cost_bps)


def summarise(folds: list[dict[str, Any]]) -> dict[str, float]:
    """Mean and standard deviation over folds of every scalar metric (NaN folds ignored)."""
    summary: dict[str, float] = {}
    for name in folds[0]:
        values = np.array([f[name] for f in folds if np.isscalar(f[name])], dtype=np.float64)
        if len(values) == len(folds):
            summary[f"{name}_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            summary[f"{name}_std"] = float(np.nanstd(values)) if np.isfinite(values).any() else float("nan")
    return summary
