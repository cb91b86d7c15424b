"""Purged cross-validation of the baseline, a final fit on the training rows and a hold-out evaluation.

Only rows marked ``train`` in the dataset are cross-validated and fitted; ``validation`` rows are scored
once by the final model. Inside every fold the class-balance weight is recomputed from the fold's own
training rows, the scaler is refitted (a Pipeline) and early stopping watches a purged slice of the
fold's training rows, so nothing fitted ever sees the rows it is scored on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from training.config import Config
from training.dataset.artifact import Dataset
from training.errors import InputError
from training.labeling.sample_weights import class_balance
from training.model.backtest import Backtest
from training.model.estimator import FittedModel, fit_with_early_stopping
from training.model.evaluation import baselines, buy_and_hold, score, summarise
from training.validation.purged_cv import CombinatorialPurgedKFold, make_cv

log = logging.getLogger(__name__)


@dataclass
class Fold:
    index: int
    train_rows: int
    test_rows: int
    best_iteration: int
    metrics: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    test_positions: np.ndarray = field(repr=False)
    proba: np.ndarray = field(repr=False)


@dataclass
class TrainingReport:
    classes: list[int]
    features: list[str]
    folds: list[Fold]
    cv_summary: dict[str, float]
    baseline_summary: dict[str, dict[str, float]]
    final: FittedModel
    holdout: dict[str, Any]
    holdout_baselines: dict[str, dict[str, Any]]
    holdout_backtest: Backtest
    holdout_buy_and_hold: Backtest
    holdout_rows: pd.DataFrame = field(repr=False)
    holdout_proba: np.ndarray = field(repr=False)
    cv_splitter: Any = field(repr=False)
    cv_targets: np.ndarray = field(repr=False)
    path_sharpes: list[float] = field(default_factory=list)

    def feature_importance(self) -> pd.DataFrame:
        model = self.final.pipeline.named_steps["model"]
        booster = model.booster_
        return (
            pd.DataFrame(
                {
                    "feature": self.features,
                    "gain": booster.feature_importance(importance_type="gain"),
                    "split": booster.feature_importance(importance_type="split"),
                }
            )
            .sort_values("gain", ascending=False)
            .reset_index(drop=True)
        )


def _base_weight(rows: pd.DataFrame) -> np.ndarray:
    """Product of the weight components that do not depend on class shares (uniqueness, returns, decay)."""
    columns = [c for c in rows.columns if c.startswith("w_") and c != "w_class_balance"]
    return rows[columns].prod(axis=1).to_numpy() if columns else np.ones(len(rows))


def fold_weights(base: np.ndarray, target: np.ndarray, balance: bool) -> np.ndarray:
    """Fold training weights: base components times class balance of these rows, normalised to mean 1."""
    weight = base * class_balance(target) if balance else base.copy()
    return weight * (len(weight) / weight.sum())


def train(dataset: Dataset, config: Config, progress: Callable[[str], None] = log.info) -> TrainingReport:
    """Cross-validate, fit and evaluate the baseline on a built dataset; nothing is logged here.

    Only the dataset's ``train`` rows are cross-validated (purged K-fold or CPCV from ``config["cv"]``),
    each fold refitting the scaler, class-balance weights and early stopping on its own training rows;
    then one final fit on all training rows is scored on the untouched ``validation`` rows (the hold-out).
    Trivial baselines are scored on the same folds so every metric has something to beat.
    """
    features = dataset.features
    rows = dataset.rows("train").sort_values(["event_timestamp", "symbol"], kind="stable").reset_index(drop=True)
    holdout_rows = dataset.rows("validation").reset_index(drop=True)
    if rows.empty or holdout_rows.empty:
        raise InputError("the dataset needs both training and validation rows; rebuild it with a longer period")
    classes = sorted(int(c) for c in rows["target"].unique())
    if len(classes) < 2:
        raise InputError(f"the training rows hold a single class ({classes[0]}); widen the barriers or the period")
    X, y = rows[features], rows["target"].to_numpy()
    t0, t1 = rows["event_timestamp"].to_numpy(), rows["t1"].to_numpy()
    base = _base_weight(rows)
    balance = bool(config["weights"]["class_balance"])
    cost = float(config["backtest"]["cost_bps"])

    splitter = make_cv(config["cv"])
    label_times = pd.Series(rows["t1"].to_numpy(), index=rows["event_timestamp"])  # t1 indexed by t0
    folds: list[Fold] = []
    for index, (train_idx, test_idx) in enumerate(splitter.split(X, t1=label_times)):
        fitted = fit_with_early_stopping(
            X.iloc[train_idx],
            y[train_idx],
            fold_weights(base[train_idx], y[train_idx], balance),
            t0[train_idx],
            t1[train_idx],
            config["model"],
        )
        test = rows.iloc[test_idx]
        proba = fitted.pipeline.predict_proba(X.iloc[test_idx])
        metrics, _ = score(test, proba, classes, cost)
        metrics["best_iteration"] = fitted.best_iteration
        fold = Fold(index, len(train_idx), len(test_idx), fitted.best_iteration, metrics,
                    baselines(y[train_idx], test, classes, cost), test_idx, proba)  # fmt: skip
        folds.append(fold)
        progress(
            f"fold {index}: {len(train_idx):,} train / {len(test_idx):,} test rows, AUC {metrics['roc_auc']:.3f}, "
            f"best iteration {fitted.best_iteration}"
        )

    path_sharpes = _cpcv_path_sharpes(splitter, rows, folds, classes, cost)
    final = fit_with_early_stopping(X, y, fold_weights(base, y, balance), t0, t1, config["model"])
    holdout_proba = final.pipeline.predict_proba(holdout_rows[features])
    holdout, holdout_backtest = score(holdout_rows, holdout_proba, classes, cost)
    holdout["best_iteration"] = final.best_iteration
    holdout_baselines = baselines(y, holdout_rows, classes, cost)
    progress(
        f"hold-out: {len(holdout_rows):,} rows, AUC {holdout['roc_auc']:.3f}, Sharpe {holdout_backtest.sharpe:.2f}"
    )
    return TrainingReport(
        classes=classes,
        features=features,
        folds=folds,
        cv_summary=summarise([f.metrics for f in folds]),
        baseline_summary={name: summarise([f.baselines[name] for f in folds]) for name in folds[0].baselines},
        final=final,
        holdout=holdout,
        holdout_baselines=holdout_baselines,
        holdout_backtest=holdout_backtest,
        holdout_buy_and_hold=buy_and_hold(holdout_rows, cost),
        holdout_rows=holdout_rows,
        holdout_proba=holdout_proba,
        cv_splitter=splitter,
        cv_targets=y,
        path_sharpes=path_sharpes,
    )


def _cpcv_path_sharpes(splitter: Any, rows: pd.DataFrame, folds: list[Fold], classes: list[int], cost: float):
    """CPCV only: stitch each backtest path from the splits that test its folds; Sharpe per path."""
    if not isinstance(splitter, CombinatorialPurgedKFold):
        return []
    fold_ids = splitter.fold_ids(rows["event_timestamp"])
    sharpes = []
    for path in splitter.backtest_paths():
        proba = np.zeros((len(rows), len(classes)))
        for cv_fold, split in enumerate(path):
            fold = folds[int(split)]
            mine = fold_ids[fold.test_positions] == cv_fold
            proba[fold.test_positions[mine]] = fold.proba[mine]
        sharpes.append(score(rows, proba, classes, cost)[1].sharpe)
    return sharpes
