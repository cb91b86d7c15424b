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
from training.model.backtest import BARS_PER_YEAR, Backtest
from training.model.estimator import FittedModel, fit_with_early_stopping
from training.model.evaluation import baselines, buy_and_hold, score, summarise
from training.validation import split_invariants
from training.validation.purged_cv import CombinatorialPurgedKFold, make_cv
from training.validation.split_invariants import to_ns

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
    train_positions: np.ndarray = field(repr=False, default_factory=lambda: np.array([], dtype=np.int64))
    fitted: FittedModel | None = field(repr=False, default=None)


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
    path_returns: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)  # OOS daily returns, a column per path
    calendar_bars: int = 0

    def splits_record(self, fingerprint: str, cv: Config) -> dict[str, Any]:
        """What ``verify-leakage --run`` audits: every fold's rows and the preprocessing fitted in it (JSON)."""

        def fitted(model: FittedModel, rows: np.ndarray) -> dict[str, Any]:
            scaler = model.pipeline.named_steps["scaler"]
            return {
                "fit": rows[model.fit_positions].tolist(),
                "early_stopping": rows[model.early_stopping_positions].tolist(),
                "scaler": {"type": type(scaler).__name__, "center": scaler.center_.tolist(),
                           "scale": scaler.scale_.tolist()},
            }  # fmt: skip

        everything = np.arange(len(self.cv_targets))
        return {
            "rows": "the dataset's train rows sorted by (event_timestamp, symbol); positions are 0-based",
            "dataset_fingerprint": fingerprint,
            "cv": dict(cv),
            "calendar_bars": self.calendar_bars,
            "features": self.features,
            "folds": [
                {"fold": f.index, "train": f.train_positions.tolist(), "test": f.test_positions.tolist(),
                 **fitted(f.fitted, f.train_positions)}
                for f in self.folds
                if f.fitted is not None
            ],
            "final": fitted(self.final, everything),
        }

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


def training_rows(dataset: Dataset) -> pd.DataFrame:
    """The rows cross-validated and fitted: the dataset's ``train`` rows sorted by (event_timestamp, symbol)."""
    return dataset.rows("train").sort_values(["event_timestamp", "symbol"], kind="stable").reset_index(drop=True)


def bar_calendar(dataset: Dataset) -> np.ndarray:
    """The embargo's calendar, one for hold-out and CV: distinct t0 and t1 of all the dataset's rows (int64 ns)."""
    frame = dataset.frame
    return split_invariants.bar_calendar(to_ns(frame["event_timestamp"]), to_ns(frame["t1"]))


def cv_splits(dataset: Dataset, cv: Config) -> tuple[Any, list[tuple[np.ndarray, np.ndarray]]]:
    """The configured splitter and its (train, test) positions over :func:`training_rows`, embargo counted on
    :func:`bar_calendar`: what ``train`` fits on and what ``verify-leakage`` audits."""
    rows = training_rows(dataset)
    splitter = make_cv(cv)
    label_times = pd.Series(rows["t1"].to_numpy(), index=rows["event_timestamp"])  # t1 indexed by t0
    splits = splitter.split(rows[dataset.features], t1=label_times, bar_times=bar_calendar(dataset))
    return splitter, [(np.asarray(a), np.asarray(b)) for a, b in splits]


def train(dataset: Dataset, config: Config, progress: Callable[[str], None] = log.info) -> TrainingReport:
    """Cross-validate, fit and evaluate the baseline on a built dataset; nothing is logged here.

    Only the dataset's ``train`` rows are cross-validated (purged K-fold or CPCV from ``config["cv"]``),
    each fold refitting the scaler, class-balance weights and early stopping on its own training rows;
    then one final fit on all training rows is scored on the untouched ``validation`` rows (the hold-out).
    Trivial baselines are scored on the same folds so every metric has something to beat.
    """
    features = dataset.features
    rows = training_rows(dataset)
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

    splitter, splits = cv_splits(dataset, config["cv"])
    folds: list[Fold] = []
    for index, (train_idx, test_idx) in enumerate(splits):
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
                    baselines(y[train_idx], test, classes, cost), test_idx, proba, train_idx, fitted)  # fmt: skip
        folds.append(fold)
        progress(
            f"fold {index}: {len(train_idx):,} train / {len(test_idx):,} test rows, AUC {metrics['roc_auc']:.3f}, "
            f"best iteration {fitted.best_iteration}"
        )

    path_returns = _path_returns(splitter, rows, folds, classes, cost)
    path_sharpes = _cpcv_path_sharpes(splitter, path_returns)
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
        path_returns=path_returns,
        calendar_bars=len(bar_calendar(dataset)),
    )


def _path_returns(
    splitter: Any, rows: pd.DataFrame, folds: list[Fold], classes: list[int], cost: float
) -> pd.DataFrame:
    """Out-of-sample daily returns of every backtest path: CPCV's paths, or the K folds' test sets as one path."""
    if not isinstance(splitter, CombinatorialPurgedKFold):
        proba = np.zeros((len(rows), len(classes)))
        for fold in folds:
            proba[fold.test_positions] = fold.proba
        return pd.DataFrame({"path_0": score(rows, proba, classes, cost)[1].daily})
    fold_ids = splitter.fold_ids(rows["event_timestamp"])
    paths = {}
    for number, path in enumerate(splitter.backtest_paths()):
        proba = np.zeros((len(rows), len(classes)))
        for cv_fold, split in enumerate(path):
            fold = folds[int(split)]
            mine = fold_ids[fold.test_positions] == cv_fold
            proba[fold.test_positions[mine]] = fold.proba[mine]
        paths[f"path_{number}"] = score(rows, proba, classes, cost)[1].daily
    return pd.DataFrame(paths)


def _cpcv_path_sharpes(splitter: Any, path_returns: pd.DataFrame) -> list[float]:
    """CPCV only: the annualised Sharpe ratio of each backtest path (as the backtest computes it)."""
    if not isinstance(splitter, CombinatorialPurgedKFold):
        return []
    out = []
    for column in path_returns:
        daily = path_returns[column].dropna()
        std = float(daily.std(ddof=1)) if len(daily) > 1 else 0.0
        out.append(float(daily.mean() / std * np.sqrt(BARS_PER_YEAR)) if std > 0 else 0.0)
    return out
