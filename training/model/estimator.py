"""The baseline model: a Pipeline of RobustScaler and LGBMClassifier, fitted with purged early stopping.

Early stopping watches a slice at the end of the training rows (by time) that is purged from the rows the
trees are fitted on, never the fold being scored. The scaler is fitted on the fitted rows only, so
neither the early-stopping slice nor the scored fold leaks into preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from training.errors import InputError


def lgbm_params(model: dict[str, Any], n_classes: int) -> dict[str, Any]:
    """config["model"] in LightGBM's scikit-learn names; equal inputs give equal models."""
    params: dict[str, Any] = {
        "objective": model["objective"] if n_classes == 2 else "multiclass",
        "num_leaves": model["num_leaves"],
        "learning_rate": model["learning_rate"],
        "max_depth": model["max_depth"],
        "colsample_bytree": model["feature_fraction"],
        "subsample": model["bagging_fraction"],
        "subsample_freq": model["bagging_freq"],
        "reg_alpha": model["lambda_l1"],
        "reg_lambda": model["lambda_l2"],
        "random_state": model["seed"],
        "n_estimators": model["num_boost_round"],
        # One thread with a fixed seed is bit-for-bit reproducible; LightGBM's `deterministic` flag costs ~7x
        # on these small panels, and more threads buy little at this size.
        "n_jobs": 1,
        "verbose": -1,
    }
    return params


def make_pipeline(model: dict[str, Any], n_classes: int = 2):
    """An unfitted Pipeline(RobustScaler, LGBMClassifier), e.g. for cross_val_score or GridSearchCV."""
    from lightgbm import LGBMClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler

    scaler = RobustScaler().set_output(transform="pandas")  # trees see feature names, not Column_0
    return Pipeline([("scaler", scaler), ("model", LGBMClassifier(**lgbm_params(model, n_classes)))])


@dataclass
class FittedModel:
    pipeline: Any
    best_iteration: int
    fit_rows: int
    early_stopping_rows: int
    purged_rows: int
    fit_positions: np.ndarray  # rows (of those given) the scaler and the trees were fitted on
    early_stopping_positions: np.ndarray  # rows early stopping watched


def early_stopping_slice(t0: np.ndarray, t1: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions (fit, early_stop): the last ``fraction`` of dates watch, earlier rows overlapping them are purged."""
    dates = np.unique(t0)
    first = dates[min(len(dates) - 1, max(1, int(np.floor(len(dates) * (1 - fraction)))))]
    watch = np.flatnonzero(t0 >= first)
    span_start, span_end = t0[watch].min(), t1[watch].max()
    fit = np.flatnonzero((t0 < first) & ((t1 < span_start) | (t0 > span_end)))
    return fit, watch


def fit_with_early_stopping(
    X: pd.DataFrame,
    y: np.ndarray,
    weight: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    model: dict[str, Any],
) -> FittedModel:
    """Fit on the training rows given; stop on their purged tail; return a fitted Pipeline."""
    import lightgbm
    from lightgbm import LGBMClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler

    fit, watch = early_stopping_slice(t0, t1, model["early_stopping_fraction"])
    n_classes = len(np.unique(y))
    if len(np.unique(y[fit])) < n_classes:
        raise InputError(
            f"the {len(fit):,} training rows before the early-stopping slice lack a class of the target; "
            "use a longer training period or a smaller model.early_stopping_fraction"
        )
    scaler = RobustScaler().set_output(transform="pandas").fit(X.iloc[fit])
    classifier = LGBMClassifier(**lgbm_params(model, n_classes))
    classifier.fit(
        scaler.transform(X.iloc[fit]),
        y[fit],
        sample_weight=weight[fit],
        eval_X=(scaler.transform(X.iloc[watch]),),
        eval_y=(y[watch],),
        eval_sample_weight=[weight[watch]],
        callbacks=[lightgbm.early_stopping(model["early_stopping_rounds"], verbose=False)],
    )
    pipeline = Pipeline([("scaler", scaler), ("model", classifier)])
    best = int(classifier.best_iteration_ or classifier.n_estimators)
    return FittedModel(pipeline, best, len(fit), len(watch), len(X) - len(fit) - len(watch), fit, watch)
