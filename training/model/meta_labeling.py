"""Meta-labeling (AFML 3.6) and bet sizing (AFML 10) under the purged K-fold ``train`` uses (a CPCV primary's
configuration, such as tune's winner, is evaluated on purged K-fold over its groups: :func:`cv_of_meta_labeling`).

A primary model gives each decision a side (+1 long, -1 short): a moving-average crossover on the bars'
features, or the sign of the baseline's out-of-sample ``P(+1) - 1/2``. The meta-label says whether that side
was right: ``side * ret > 0``, ``ret`` the return from the decision's close to its first barrier, so it reads
only the label window (t, t1]. A secondary LightGBM (the baseline's features plus the side) learns the
meta-label, and its probability becomes a bet size (:mod:`training.model.bet_sizing`).

Leakage: the meta model is scored on purged test folds it was not fitted on. With the model primary, the
sides a fold's meta model is fitted on come from primaries fitted inside that fold's training rows (an inner
purged CV), and the test fold's sides from the primary fitted on all of them, so no side the meta model
learns from was fitted on the rows it is scored on. The hold-out is scored once, by models fitted on the
training rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from training.config import Config
from training.errors import InputError
from training.model.backtest import Backtest, backtest
from training.model.bet_sizing import average_active, discretise, size_from_probability
from training.model.estimator import FittedModel, fit_with_early_stopping
from training.model.trainer import TrainingData, fold_weights, load_training_data, model_features, purged_splits

SIDE = "primary_side"  # the meta model's extra feature


@dataclass
class Evaluation:
    """Out-of-sample scores of one set of rows: the meta model's classification and three backtests."""

    metrics: dict[str, float]
    daily: pd.DataFrame  # per decision date: primary (unsized), filtered (side when the meta model acts), sized


@dataclass
class MetaResult:
    primary: str
    cv: Evaluation
    holdout: Evaluation
    folds: list[dict[str, float]]


def meta_labels(side: np.ndarray, ret: np.ndarray) -> np.ndarray:
    """1 where the primary's side earned a positive return to the first barrier, else 0 (AFML 3.6)."""
    return (np.asarray(side) * np.asarray(ret) > 0).astype(np.int64)


def crossover_sides(fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
    """+1 where the fast moving average is at or above the slow one, else -1."""
    return np.where(np.asarray(fast) >= np.asarray(slow), 1.0, -1.0)


def evaluate(rows: pd.DataFrame, side: np.ndarray, proba: np.ndarray, step: float, cost_bps: float) -> Evaluation:
    """Precision, recall and F1 of acting when ``proba`` > 1/2 on the meta-labels of ``rows`` (with symbol,
    event_timestamp, t1, ret, next_ret), and the Sharpe ratios of the unsized primary, of its bets the meta model
    keeps, and of the sized bets (sizes averaged over a symbol's open bets, then discretised by ``step``)."""
    truth = meta_labels(side, rows["ret"].to_numpy())
    act = (proba > 0.5).astype(np.int64)
    t0, t1 = rows["event_timestamp"].array.asi8, rows["t1"].array.asi8
    sized = discretise(average_active(rows["symbol"].to_numpy(), t0, t1, size_from_probability(proba, side)), step)

    def run(position: np.ndarray) -> Backtest:
        return backtest(rows["symbol"], rows["event_timestamp"], position, rows["next_ret"].to_numpy(), cost_bps)

    tests = {"primary": run(side), "filtered": run(side * act), "sized": run(sized)}
    metrics = {
        "rows": float(len(rows)),
        "primary_precision": float(truth.mean()),  # how often the side alone is right
        "precision": float(skm.precision_score(truth, act, zero_division=0)),
        "recall": float(skm.recall_score(truth, act, zero_division=0)),
        "f1": float(skm.f1_score(truth, act, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(truth, proba)) if len(np.unique(truth)) == 2 else float("nan"),
        "act_share": float(act.mean()),
        "mean_abs_size": float(np.abs(sized).mean()),
        "sized_share": float((sized != 0).mean()),  # rows holding a position after rounding to the step
        "max_proba": float(proba.max()) if len(proba) else float("nan"),
    }
    for name, test in tests.items():
        metrics.update({f"{name}_sharpe": test.sharpe, f"{name}_max_drawdown": test.max_drawdown,
                        f"{name}_turnover": test.turnover})  # fmt: skip
    return Evaluation(metrics, pd.DataFrame({name: test.daily for name, test in tests.items()}))


def cv_of_meta_labeling(config: Config) -> Config:
    """The configuration meta-labeling cross-validates with: purged K-fold, whatever the primary's CV was.

    A meta-label needs one out-of-sample side and one out-of-sample probability per row, which CPCV does
    not give (it tests a row in several splits). A CPCV primary (``tune``'s winner) is therefore evaluated
    on purged K-fold over the same groups: K = ``cv.n_groups``, each test fold one of CPCV's groups, with the
    same purge and embargo (:func:`~training.model.trainer.purged_splits`). The primary is refitted inside
    each fold (nested), so its CPCV only chose its configuration; no side the meta model learns from was
    fitted on the rows it is scored on."""
    cv = config.cv
    if cv.method == "purged_kfold":
        return config
    return config.with_sections({"cv": {**cv.model_dump(), "method": "purged_kfold", "n_splits": cv.n_groups}})


class _Fits:
    """Fits of the baseline's LightGBM on positions of one on-disk matrix (the features, then the side): the
    primary's on the features alone, the meta model's on the features and the side."""

    def __init__(self, data: TrainingData, config: Config) -> None:
        self.data, self.config, self.features = data, config, [*data.features, SIDE]
        self.baseline = data.X.leading(len(data.features))  # the same file without the side column

    def fit(self, rows: np.ndarray, target: np.ndarray, with_side: bool = True) -> FittedModel:
        data, model = self.data, self.config.model
        weight = fold_weights(data.base_weight[rows], target, self.config.weights.class_balance)
        matrix, features = (data.X, self.features) if with_side else (self.baseline, data.features)
        return fit_with_early_stopping(matrix, target, weight, data.t0[rows], data.t1[rows], model, rows=rows,
                                       features=features)  # fmt: skip

    def proba(self, fitted: FittedModel, rows: np.ndarray, with_side: bool = True) -> np.ndarray:
        return fitted.predict_proba(self.data.X if with_side else self.baseline, rows)[:, -1]


def _primary_sides(fits: _Fits, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model primary: out-of-sample sides of ``train`` (an inner purged CV over those rows) and the sides
    of ``test`` (the primary fitted on every row of ``train``)."""
    data = fits.data
    inner = np.zeros(len(train))
    _, splits = purged_splits(fits.config.cv, data.t0[train], data.t1[train], data.calendar)
    for inner_train, inner_test in splits:
        fitted = fits.fit(train[inner_train], y[train[inner_train]], with_side=False)
        inner[inner_test] = np.sign(fits.proba(fitted, train[inner_test], with_side=False) - 0.5)
    outer = np.sign(fits.proba(fits.fit(train, y[train], with_side=False), test, with_side=False) - 0.5)
    return np.where(inner == 0, 1.0, inner), np.where(outer == 0, 1.0, outer)


def meta_label(dataset: Any, config: Config, progress: Callable[[str], None] = lambda _: None) -> MetaResult:
    """Cross-validate the meta model on the dataset's training rows (one out-of-sample path: purged K-fold, see
    :func:`cv_of_meta_labeling`), then fit it on all of them and score the hold-out once; bet sizes and
    backtests for both.

    Memory is bounded as in ``train``: the model's features are read a column at a time into the trainer's
    on-disk matrix (:func:`~training.model.trainer.load_training_data`), the side is one more column of it,
    and every fit reads the rows it needs from there; in memory are O(rows) vectors (sides, probabilities,
    returns) and the per-row columns scoring reads."""
    settings = config.meta_labeling
    config = cv_of_meta_labeling(config)
    if config.target != "binary":
        raise InputError("meta-label reads the baseline's P(+1): build the dataset with target binary")
    features = model_features(dataset.features, config.model.feature_families)
    if settings.primary == "crossover":
        for name in (settings.fast, settings.slow):
            if name not in features:
                raise InputError(f"meta_labeling: feature {name!r} is not in the dataset ({', '.join(features)})")
    data = load_training_data(dataset, features)
    with data.X:
        return _cross_validate_and_score(data, config, progress)


def _cross_validate_and_score(data: TrainingData, config: Config, progress: Callable[[str], None]) -> MetaResult:
    settings, features = config.meta_labeling, data.features
    side_column = data.X.add_column()
    fits = _Fits(data, config)
    y = data.train["target"].to_numpy()
    ret = np.concatenate([data.train["ret"].to_numpy(), data.holdout["ret"].to_numpy()])
    if settings.primary == "crossover":
        fast, slow = (data.X.column(features.index(name)) for name in (settings.fast, settings.slow))
        sides = crossover_sides(fast, slow)
        del fast, slow
        data.X.write_column(side_column, sides)
    else:
        sides = np.ones(len(data.X))
    holdout = data.holdout_positions
    _, splits = purged_splits(config.cv, data.t0, data.t1, data.calendar)
    side_oos, proba_oos, folds = np.zeros(data.n_train), np.full(data.n_train, np.nan), []
    for index, (train, test) in enumerate(splits):
        if settings.primary == "model":
            sides[train], sides[test] = _primary_sides(fits, y, train, test)
            data.X.write_column(side_column, sides)
        meta = fits.fit(train, meta_labels(sides[train], ret[train]))
        side_oos[test], proba_oos[test] = sides[test], fits.proba(meta, test)
        scores = evaluate(data.train.iloc[test], side_oos[test], proba_oos[test], settings.step,
                          config.backtest.cost_bps).metrics  # fmt: skip
        folds.append({"fold": index, **scores})
        progress(f"meta fold {index}: precision {scores['precision']:.3f}, recall {scores['recall']:.3f}, "
                 f"sized Sharpe {scores['sized_sharpe']:.2f} (primary {scores['primary_sharpe']:.2f})")  # fmt: skip
    covered = ~np.isnan(proba_oos)
    cv = evaluate(data.train[covered], side_oos[covered], proba_oos[covered], settings.step, config.backtest.cost_bps)
    if settings.primary == "model":  # the training rows' sides are the out-of-fold ones above; the hold-out's
        sides[: data.n_train] = np.where(covered, side_oos, 1.0)  # from a primary fitted on all of them
        primary = fits.fit(np.arange(data.n_train), y, with_side=False)
        side = np.sign(fits.proba(primary, holdout, with_side=False) - 0.5)
        sides[holdout] = np.where(side == 0, 1.0, side)
        data.X.write_column(side_column, sides)
    rows = np.flatnonzero(covered) if settings.primary == "model" else np.arange(data.n_train)
    final = fits.fit(rows, meta_labels(sides[rows], ret[rows]))
    held = evaluate(data.holdout, sides[holdout], fits.proba(final, holdout), settings.step,
                    config.backtest.cost_bps)  # fmt: skip
    return MetaResult(settings.primary, cv, held, folds)
