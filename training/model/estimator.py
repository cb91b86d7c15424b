"""The baseline model: a Pipeline of RobustScaler and LGBMClassifier, fitted with purged early stopping.

Early stopping watches a slice at the end of the training rows (by time) that is purged from the rows the
trees are fitted on, never the fold being scored. The scaler is fitted on the fitted rows only, so
neither the early-stopping slice nor the scored fold leaks into preprocessing.

Nothing here copies the training matrix: a fit takes the one float64 matrix of the run (an array, or the
:class:`~training.model.feature_matrix.FeatureMatrix` file a training run keeps it in) and the positions
of its rows, computes the scaler's median and quartiles a column at a time over the fit rows, and hands
LightGBM the scaled rows a batch at a time (a :class:`lightgbm.Sequence`), which it bins as it reads them.
LightGBM sees exactly the values ``RobustScaler.transform`` would give it, so the trees are those a
``Pipeline.fit`` on copied frames grows (tests/test_train.py checks it bit for bit).

Why the scaler stays although trees "do not care about scale": LightGBM's histogram binning is not
invariant to centring. It gives zero a bin of its own and bins the negative and positive values apart
(``FindBinWithZeroAsOneBin``), so ``x`` and ``(x - median) / IQR`` get different bin boundaries whenever a
feature has more distinct values than ``max_bin``. On the bundled data, dropping the scaler moved fold 0's
best iteration from 45 to 22 and fold probabilities by up to 0.14; the scaler is kept so the model (and its
metrics) stay what they were.
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from training.config import ModelConfig
from training.errors import InputError
from training.infra.stage_times import stage
from training.model.position_runs import positions_of, runs_of

PREDICT_BATCH_ROWS = 65_536  # rows scaled and scored at a time: bounds the copy a prediction makes
PUSH_BATCH_ROWS = 16_384  # rows scaled and handed to LightGBM's binning at a time
THREADS_ENV = "OHLCV_LGBM_THREADS"


def lgbm_threads() -> int:
    """LightGBM's threads: ``OHLCV_LGBM_THREADS``, else 1, never chosen from the machine or its load.

    The trees are the same at any thread count (column-wise histograms; tests/test_train_streaming.py), but the
    early-stopping metric is a multi-threaded sum whose last bits change with the count, and a near-tie can then
    move the best iteration: a model is the same everywhere only at a fixed count (docs/performance.md)."""
    return max(1, int(os.environ.get(THREADS_ENV) or 1))


def lgbm_params(model: ModelConfig, n_classes: int, threads: int | None = None) -> dict[str, Any]:
    """config.model in LightGBM's scikit-learn names; equal inputs give equal models (whatever ``threads``,
    by default :func:`lgbm_threads`)."""
    params: dict[str, Any] = {
        "objective": model.objective if n_classes == 2 else "multiclass",
        "num_leaves": model.num_leaves,
        "learning_rate": model.learning_rate,
        "max_depth": model.max_depth,
        "colsample_bytree": model.feature_fraction,
        "subsample": model.bagging_fraction,
        "subsample_freq": model.bagging_freq,
        "reg_alpha": model.lambda_l1,
        "reg_lambda": model.lambda_l2,
        "random_state": model.seed,
        "n_estimators": model.num_boost_round,
        "n_jobs": threads or lgbm_threads(),
        # Column-wise histograms: each feature's histogram sums its rows in order on one thread, whatever the
        # thread count, and LightGBM does not pick a layout by timing both (a choice that could differ by run).
        "force_col_wise": True,
        "verbose": -1,
    }
    return params


def make_pipeline(model: ModelConfig, n_classes: int = 2):
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
    fit_runs: np.ndarray  # runs_of(the rows, of those given, the scaler and the trees were fitted on)
    early_stopping_runs: np.ndarray  # runs_of(the rows early stopping watched)
    rounds: int = 0  # boosting rounds run: the best iteration + early_stopping_rounds, or num_boost_round

    @property
    def fit_positions(self) -> np.ndarray:
        return positions_of(self.fit_runs)

    @property
    def early_stopping_positions(self) -> np.ndarray:
        return positions_of(self.early_stopping_runs)

    def predict_proba(self, X: np.ndarray, rows: np.ndarray | None = None):
        """Class probabilities of ``rows`` of the matrix ``X`` (all rows by default), scored a batch at a time,
        so a prediction copies at most :data:`PREDICT_BATCH_ROWS` rows.

        What ``pipeline.predict_proba`` gives, without its copies: the batch is read once and scaled in place as
        ``RobustScaler.transform`` scales it, and the booster scores the array (no DataFrame, no validation
        copy, no conversion back to an array); the binary model's ``[1 - p, p]`` is LGBMClassifier's."""
        scaler, classifier = self.pipeline.named_steps["scaler"], self.pipeline.named_steps["model"]
        rows = np.arange(len(X)) if rows is None else np.asarray(rows, dtype=np.int64)
        out = []
        for start in range(0, len(rows), PREDICT_BATCH_ROWS):
            batch = _scaled(X, rows[start : start + PREDICT_BATCH_ROWS], scaler.center_, scaler.scale_)
            score = classifier.booster_.predict(batch, num_threads=lgbm_threads())
            out.append(score if score.ndim == 2 else np.vstack((1.0 - score, score)).transpose())
        n_classes = len(classifier.classes_)
        return np.concatenate(out) if out else np.empty((0, n_classes))


def early_stopping_slice(t0: np.ndarray, t1: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions (fit, early_stop): the last ``fraction`` of dates watch, earlier rows overlapping them are purged."""
    dates = np.unique(t0)
    first = dates[min(len(dates) - 1, max(1, int(np.floor(len(dates) * (1 - fraction)))))]
    watch = np.flatnonzero(t0 >= first)
    span_start, span_end = t0[watch].min(), t1[watch].max()
    fit = np.flatnonzero((t0 < first) & ((t1 < span_start) | (t0 > span_end)))
    return fit, watch


def fit_scaler(X: np.ndarray, rows: np.ndarray, features: list[str]):
    """A RobustScaler fitted on ``rows`` of ``X``, a column at a time: the median and inter-quartile range
    ``RobustScaler().fit(X[rows])`` computes (the same numpy calls), without copying more than one column."""
    from sklearn.preprocessing import RobustScaler

    center = np.empty(X.shape[1])
    quartiles = np.empty((2, X.shape[1]))
    for j in range(X.shape[1]):
        column = (X[:, j] if isinstance(X, np.ndarray) else X.column(j))[rows]
        center[j] = np.nanmedian(column)
        quartiles[:, j] = np.nanpercentile(column, (25.0, 75.0))
    scale = quartiles[1] - quartiles[0]
    scale[scale < 10 * np.finfo(scale.dtype).eps] = 1.0  # scikit-learn's _handle_zeros_in_scale
    scaler = RobustScaler().set_output(transform="pandas")  # trees see feature names, not Column_0
    scaler.center_, scaler.scale_ = center, scale
    scaler.n_features_in_, scaler.feature_names_in_ = X.shape[1], np.asarray(features, dtype=object)
    return scaler


def _scaled(X: np.ndarray, positions: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``X[positions]`` as ``RobustScaler.transform`` gives them: subtract, then divide, in float64, in place
    in the one copy the read makes (fancy indexing, or :meth:`FeatureMatrix.take`)."""
    values = X[positions]
    values -= center
    values /= scale
    return values


def _scaled_rows(X: np.ndarray, rows: np.ndarray, scaler: Any):
    """``rows`` of ``X`` as ``scaler.transform`` gives them, for LightGBM to read a batch (or a row) at a time."""
    import lightgbm

    center, scale = scaler.center_, scaler.scale_

    def scaled(positions: np.ndarray) -> np.ndarray:
        return _scaled(X, positions, center, scale)

    class ScaledRows(lightgbm.Sequence):
        batch_size = PUSH_BATCH_ROWS
        block_start, block = 0, np.empty((0, len(center)))

        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, index):
            if isinstance(index, slice):
                return scaled(rows[index])
            # One row: LightGBM draws its bin-construction sample (up to 200,000 rows) one row at a time, in
            # increasing order. Rows come from a block scaled at once, so a row costs an index, not a read
            # and two numpy operations of its own (LightGBM copies the view it is given).
            i = operator.index(index) + (len(rows) if index < 0 else 0)
            if not self.block_start <= i < self.block_start + len(self.block):
                self.block_start, self.block = i, scaled(rows[i : i + PUSH_BATCH_ROWS])
            return self.block[i - self.block_start]

    return ScaledRows()


def _params(model: ModelConfig, n_classes: int, threads: int | None = None) -> dict[str, Any]:
    """What LGBMClassifier.fit passes to lightgbm.train for :func:`lgbm_params` (LightGBM 4's rules)."""
    params = dict(lgbm_params(model, n_classes, threads))
    params["num_threads"] = params.pop("n_jobs")
    params.pop("n_estimators")
    params.update(boosting_type="gbdt", min_child_samples=20, min_child_weight=1e-3, min_split_gain=0.0,
                  subsample_for_bin=200_000, metric=params["objective"])  # fmt: skip
    if n_classes > 2:
        params["num_class"] = n_classes
    # A Dataset read a batch at a time (a Sequence) draws its bin-construction sample in Python with the
    # Dataset's own parameters, which leave ``seed`` out; naming the data seed makes that sample the one a
    # matrix of the same rows gets (it matters above bin_construct_sample_cnt, 200,000 rows).
    params["data_random_seed"] = params["random_state"]
    return params


def _classifier(booster: Any, model: ModelConfig, encoder: Any, evals: dict[str, Any]):
    """The LGBMClassifier that ``fit`` would have left holding ``booster`` (what predict, serve and skops use)."""
    from lightgbm import LGBMClassifier

    n_classes = len(encoder.classes_)
    # One thread where the model is served: a request scores a few rows, which threads would only synchronise.
    classifier = LGBMClassifier(**lgbm_params(model, n_classes, threads=1))
    classifier._le = encoder
    classifier._class_map = dict(zip(encoder.classes_, encoder.transform(encoder.classes_), strict=True))
    classifier._classes, classifier._n_classes = encoder.classes_, n_classes
    classifier._objective = classifier.objective
    classifier._class_weight = None
    booster.pandas_categorical = []  # as after a fit on a DataFrame without categorical columns (saved with it)
    classifier._Booster = booster
    classifier._n_features = classifier._n_features_in = booster.num_feature()
    classifier._fitted_with_feature_names = True
    classifier._evals_result = evals
    classifier._best_iteration, classifier._best_score = booster.best_iteration, booster.best_score
    classifier.fitted_ = True
    booster.free_dataset()
    return classifier


def fit_with_early_stopping(
    X: np.ndarray | pd.DataFrame,
    y: np.ndarray,
    weight: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    model: ModelConfig,
    rows: np.ndarray | None = None,
    features: list[str] | None = None,
) -> FittedModel:
    """Fit on the training rows given; stop on their purged tail; return a fitted Pipeline.

    ``rows`` are the positions in ``X`` of the training rows (by default its first ``len(y)`` rows, without
    an array of positions) and ``y``, ``weight``, ``t0`` and ``t1`` are aligned with them; the positions in
    the result count within ``rows``. ``features`` names the columns of an ``X`` that is an array. LightGBM
    keeps weights as float32: a float32 ``weight`` is used as it is, a float64 one is cast per Dataset.
    """
    import lightgbm
    from lightgbm.compat import _LGBMLabelEncoder
    from sklearn.pipeline import Pipeline

    if isinstance(X, pd.DataFrame):
        features = [str(c) for c in X.columns]
        X = X.to_numpy(dtype=np.float64)
    if features is None:
        raise ValueError("features must name the columns of an array X")
    rows = None if rows is None else np.asarray(rows, dtype=np.int64)
    fit, watch = early_stopping_slice(t0, t1, model.early_stopping_fraction)
    n_classes = len(np.unique(y))
    if len(np.unique(y[fit])) < n_classes:
        raise InputError(
            f"the {len(fit):,} training rows before the early-stopping slice lack a class of the target; "
            "use a longer training period or a smaller model.early_stopping_fraction"
        )
    with stage("scaler"):
        scaler = fit_scaler(X, _positions(rows, fit), features)
    encoder = _LGBMLabelEncoder().fit(y)
    params = _params(model, n_classes, lgbm_threads())

    # Only the Datasets' own copies (LightGBM keeps label and weight as float32) outlive their construction;
    # positions are kept as runs. At 20M fit rows every array of 8 bytes a row held through training is 160 MB.
    def binned(subset: np.ndarray, reference: Any = None):
        return lightgbm.Dataset(_scaled_rows(X, _positions(rows, subset), scaler), label=encoder.transform(y[subset]),
                                weight=weight[subset], feature_name=features, params=params,
                                reference=reference).construct()  # fmt: skip

    with stage("bin"):
        train_set = binned(fit)
        watched = binned(watch, reference=train_set)
    n_fit, n_watch, fit_runs, watch_runs = len(fit), len(watch), runs_of(fit), runs_of(watch)
    del fit, watch
    evals: dict[str, Any] = {}
    with stage("boost"):
        booster = lightgbm.train(
            params,
            train_set,
            num_boost_round=model.num_boost_round,
            valid_sets=[watched],
            callbacks=[lightgbm.early_stopping(model.early_stopping_rounds, verbose=False),
                       lightgbm.record_evaluation(evals)],
        )  # fmt: skip
    # Rounds run (the booster kept is cut to the best): one evaluation of the watched slice per round.
    rounds = max((len(values) for metrics in evals.values() for values in metrics.values()), default=0)
    classifier = _classifier(booster, model, encoder, evals)
    pipeline = Pipeline([("scaler", scaler), ("model", classifier)])
    best = int(classifier.best_iteration_ or classifier.n_estimators)
    return FittedModel(pipeline, best, n_fit, n_watch, len(y) - n_fit - n_watch, fit_runs, watch_runs, rounds)


def _positions(rows: np.ndarray | None, subset: np.ndarray) -> np.ndarray:
    """Positions in ``X`` of ``subset`` (positions within ``rows``); ``rows`` None: the first rows of ``X``."""
    return subset if rows is None else rows[subset]
