"""Purged cross-validation of the baseline, a final fit on the training rows and a hold-out evaluation.

Only rows marked ``train`` in the dataset are cross-validated and fitted; ``validation`` rows are scored
once by the final model. Inside every fold the class-balance weight is recomputed from the fold's own
training rows, the scaler is refitted (a Pipeline) and early stopping watches a purged slice of the
fold's training rows, so nothing fitted ever sees the rows it is scored on.

The rows are read once, a part at a time and only the columns training needs, into one float64 matrix
kept in a scratch file (:class:`TrainingData`, :class:`~training.model.feature_matrix.FeatureMatrix`);
every fold and the final fit take positions into it and LightGBM reads the rows it bins a batch at a time
(:mod:`training.model.estimator`), so no fold copies the matrix and memory never holds all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from training.config import Config, CVConfig
from training.dataset.artifact import Dataset, stacked_in_order
from training.errors import InputError
from training.indicators.definitions import INDICATORS
from training.infra.stage_times import stage
from training.labeling.sample_weights import class_balance
from training.model.backtest import BARS_PER_YEAR, Backtest, backtest
from training.model.cross_section import CrossSection, of_cv, of_rows, score_of
from training.model.estimator import FittedModel, fit_with_early_stopping, lgbm_threads
from training.model.evaluation import baselines, buy_and_hold, score, signal, summarise
from training.model.feature_matrix import FeatureMatrix
from training.model.input_distribution import input_distribution
from training.model.position_runs import positions_of, runs_of, runs_within
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
    test_runs: np.ndarray = field(repr=False)  # runs_of(the scored positions): kept compact for the whole run
    scores: np.ndarray = field(repr=False)  # aligned with test_positions: see compact_proba
    train_runs: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 2), dtype=np.int64))
    fitted: FittedModel | None = field(repr=False, default=None)

    @property
    def test_positions(self) -> np.ndarray:
        return positions_of(self.test_runs)

    @property
    def proba(self) -> np.ndarray:
        """Class probabilities of the scored rows, as ``predict_proba`` returned them."""
        if self.scores.ndim == 2:
            return self.scores
        return np.column_stack([1.0 - self.scores, self.scores])

    @property
    def train_positions(self) -> np.ndarray:
        return positions_of(self.train_runs)


def compact_proba(proba: np.ndarray) -> np.ndarray:
    """What a fold keeps of its predictions until the run ends: P(class 1) alone for a binary model.

    LightGBM's binary ``predict_proba`` is ``[1 - p, p]`` computed from ``p``, so :attr:`Fold.proba` rebuilds
    the same floats; at 20M scored rows that halves 320 MB."""
    binary = proba.ndim == 2 and proba.shape[1] == 2 and np.array_equal(proba[:, 0], 1.0 - proba[:, 1])
    return np.ascontiguousarray(proba[:, 1]) if binary else proba


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
    holdout_rows: pd.DataFrame = field(repr=False)  # the validation rows' META_COLUMNS, in the dataset's order
    holdout_proba: np.ndarray = field(repr=False)
    cv_splitter: Any = field(repr=False)
    cv_targets: np.ndarray = field(repr=False)
    path_sharpes: list[float] = field(default_factory=list)
    path_returns: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)  # OOS daily returns, a column per path
    calendar_bars: int = 0
    input_example: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)  # first hold-out rows' features
    input_distribution: dict[str, Any] = field(repr=False, default_factory=dict)  # update's drift reference
    cross_sections: dict[str, CrossSection] = field(repr=False, default_factory=dict)  # "cv", "holdout"

    def splits_record(self, fingerprint: str, cv: CVConfig) -> dict[str, Any]:
        """What ``verify-leakage --run`` audits: every fold's rows and the preprocessing fitted in it (JSON)."""

        def fitted(model: FittedModel, rows: np.ndarray) -> dict[str, Any]:
            """``rows``: runs of the positions the model's own positions count within."""
            scaler = model.pipeline.named_steps["scaler"]
            return {
                "fit": runs_within(rows, model.fit_runs).tolist(),
                "early_stopping": runs_within(rows, model.early_stopping_runs).tolist(),
                "scaler": {"type": type(scaler).__name__, "center": scaler.center_.tolist(),
                           "scale": scaler.scale_.tolist()},
            }  # fmt: skip

        everything = np.array([[0, len(self.cv_targets)]], dtype=np.int64)
        return {
            "rows": "the dataset's train rows sorted by (event_timestamp, symbol); positions are 0-based, "
            "written as runs [first, last + 1) of consecutive positions",
            "dataset_fingerprint": fingerprint,
            "cv": cv.model_dump(),
            "calendar_bars": self.calendar_bars,
            "features": self.features,
            "folds": [
                {
                    "fold": f.index,
                    "train": f.train_runs.tolist(),
                    "test": f.test_runs.tolist(),
                    **fitted(f.fitted, f.train_runs),
                }
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


META_COLUMNS = ("symbol", "event_timestamp", "t1", "target", "ret", "next_ret")  # what scoring reads per row
WEIGHT_PREFIX = "w_"


@dataclass
class TrainingData:
    """Everything a training run reads, built once from the dataset's parts: the one O(rows x features) array.

    ``X`` (float64, kept in a scratch file: :class:`FeatureMatrix`) holds the ``train`` rows, sorted by
    (event_timestamp, symbol), then the ``validation`` rows in the dataset's order; ``train`` and
    ``holdout`` carry the per-row columns scoring needs (:data:`META_COLUMNS`), aligned with ``X[:n_train]``
    and ``X[n_train:]``. Folds are index sets into it; nothing copies it per fold.
    """

    features: list[str]
    X: FeatureMatrix = field(repr=False)
    train: pd.DataFrame = field(repr=False)
    holdout: pd.DataFrame = field(repr=False)
    base_weight: np.ndarray = field(repr=False)  # of the train rows
    t0: np.ndarray = field(repr=False)  # train rows' event_timestamp, int64 ns
    t1: np.ndarray = field(repr=False)  # train rows' t1, int64 ns
    calendar: np.ndarray = field(repr=False)  # bar_calendar of every row of the dataset

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def holdout_positions(self) -> np.ndarray:
        return np.arange(self.n_train, len(self.X))


@dataclass
class _Layout:
    """Where each part's rows go, from a first pass over four narrow columns of every part."""

    train_masks: list[np.ndarray]  # per part: rows of the split "train"
    holdout_masks: list[np.ndarray]
    train_order: np.ndarray  # the concatenated train rows -> (event_timestamp, symbol) order
    holdout_order: np.ndarray  # the concatenated validation rows -> the dataset's order
    t0: np.ndarray  # train rows, sorted, int64 ns
    t1: np.ndarray
    calendar: np.ndarray


def _layout(dataset: Dataset) -> _Layout:
    """The trainer's row order without reading a feature: the ``train`` rows sorted by (event_timestamp,
    symbol) as a stable lexsort of int64 times and symbol codes (what a stable pandas sort of the rows on
    both columns gives), and the ``validation`` rows in the dataset's order (as :meth:`Dataset.read`
    merges the parts: a stable sort on time)."""
    t0s, t1s, symbols, train_masks, holdout_masks = [], [], [], [], []
    for part in dataset.parts(["event_timestamp", "t1", "symbol", "split"]):
        t0s.append(to_ns(part["event_timestamp"], "event_timestamp"))
        t1s.append(to_ns(part["t1"], "t1"))
        symbols.append(pd.Categorical(part["symbol"]))
        train_masks.append((part["split"] == "train").to_numpy())
        holdout_masks.append((part["split"] == "validation").to_numpy())
    t0, t1 = _joined(t0s), _joined(t1s)
    calendar = split_invariants.bar_calendar(t0, t1)
    categories = sorted(set().union(*(s.categories for s in symbols)))  # as Python (and pandas) sorts str
    codes = _joined([pd.Categorical(s, categories=categories).codes for s in symbols])
    train, holdout = _joined(train_masks), _joined(holdout_masks)
    train_order = np.lexsort((codes[train], t0[train]))
    n_holdout = int(holdout.sum())
    merged = len(train_masks) > 1  # several part files: merged as Dataset.read merges them
    holdout_order = np.argsort(t0[holdout], kind="stable") if merged else np.arange(n_holdout)
    return _Layout(train_masks, holdout_masks, train_order, holdout_order, t0[train][train_order],
                   t1[train][train_order], calendar)  # fmt: skip


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    """The parts' arrays end to end; one part's own array, not a copy (an in-memory dataset is one part)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _inverse(order: np.ndarray) -> np.ndarray:
    where = np.empty(len(order), dtype=np.int64)
    where[order] = np.arange(len(order))
    return where


def _columns(dataset: Dataset) -> list[str]:
    if dataset.path is None:
        return [str(c) for c in dataset.frame.columns]
    import pyarrow.parquet as pq

    return list(pq.read_schema(dataset.part_files()[0]).names)


def model_features(features: list[str], families: list[str] | None) -> list[str]:
    """The dataset's features the model sees: every one, or those of the configured indicator families."""
    if families is None:
        return list(features)
    family_of = {name: i.family for i in INDICATORS for name in (i.name, i.model_feature)}
    chosen = [f for f in features if family_of.get(f) in families]
    if not chosen:
        raise InputError(f"configuration key 'model.feature_families' {families} selects none of the dataset features")
    return chosen


def load_training_data(dataset: Dataset, features: list[str] | None = None, holdout: bool = True) -> TrainingData:
    """Read the dataset a part at a time, only the columns training needs: ``features`` (default: every one of the
    dataset's) of the ``train`` rows, and of the ``validation`` rows unless ``holdout`` is false (tune's trials
    never read the hold-out).

    A first pass over (event_timestamp, t1, symbol, split) fixes where every row goes. Then each feature
    is read from every part into one column and written to ``X``'s scratch file (memory holds one column,
    not the matrix), and a last pass reads the scoring columns and weight components. The base weight is
    the product of the weight components that do not depend on class shares (uniqueness, returns, decay).
    """
    features = list(features or dataset.features)
    layout = _layout(dataset)
    if not holdout:
        layout = replace(layout, holdout_masks=[np.zeros_like(m) for m in layout.holdout_masks],
                         holdout_order=np.arange(0))  # fmt: skip
    weights = [c for c in _columns(dataset) if c.startswith(WEIGHT_PREFIX) and c != "w_class_balance"]
    n_train, n_holdout = len(layout.train_order), len(layout.holdout_order)
    train_to = _inverse(layout.train_order)
    holdout_to = _inverse(layout.holdout_order) + n_train

    def destinations(masks: list[np.ndarray], to: np.ndarray) -> list[np.ndarray]:
        """Per part: the matrix rows its rows of one split go to."""
        ends = np.cumsum([int(mask.sum()) for mask in masks])
        return [to[end - int(mask.sum()) : end] for mask, end in zip(masks, ends, strict=True)]

    train_rows_to = destinations(layout.train_masks, train_to)
    holdout_rows_to = destinations(layout.holdout_masks, holdout_to)
    X = FeatureMatrix(n_train + n_holdout, len(features))
    for j, name in enumerate(features):  # a column at a time: memory holds one column, not the matrix
        column = np.empty(n_train + n_holdout)
        for index, part in enumerate(dataset.parts([name])):
            values = part[name].to_numpy(dtype=np.float64)
            column[train_rows_to[index]] = values[layout.train_masks[index]]
            column[holdout_rows_to[index]] = values[layout.holdout_masks[index]]
        X.write_column(j, column)
        del column
    train_meta: list[pd.DataFrame] = []
    holdout_meta: list[pd.DataFrame] = []
    base: list[np.ndarray] = []
    # The symbol as a Categorical (sorted categories: the backtest's sort by symbol is unchanged): two bytes a
    # row where an object column holds eight.
    for index, part in enumerate(dataset.parts(list(dict.fromkeys([*META_COLUMNS, *weights])), ("symbol",))):
        train_meta.append(part.loc[layout.train_masks[index], list(META_COLUMNS)])
        holdout_meta.append(part.loc[layout.holdout_masks[index], list(META_COLUMNS)])
        train_rows = part.loc[layout.train_masks[index], weights]
        base.append(train_rows.prod(axis=1).to_numpy() if weights else np.ones(len(train_rows)))
        del part, train_rows

    train = stacked_in_order(train_meta, layout.train_order)
    # t0 and t1 as views of the rows' own columns (to_ns reads nanosecond columns in place): held once.
    t0, t1 = to_ns(train["event_timestamp"], "event_timestamp"), to_ns(train["t1"], "t1")
    if not (np.array_equal(t0, layout.t0) and np.array_equal(t1, layout.t1)):
        raise AssertionError("the training rows are not in the layout's order")  # a bug here, not bad input
    return TrainingData(features, X, train, stacked_in_order(holdout_meta, layout.holdout_order),
                        np.concatenate(base)[layout.train_order], t0, t1, layout.calendar)  # fmt: skip


def fold_weights(base: np.ndarray, target: np.ndarray, balance: bool) -> np.ndarray:
    """Fold training weights: base components times class balance of these rows, normalised to mean 1, in
    the float32 LightGBM keeps them as (half the bytes held through a fit; the values LightGBM would use)."""
    weight = base * class_balance(target) if balance else base.copy()
    return (weight * (len(weight) / weight.sum())).astype(np.float32)


def training_rows(dataset: Dataset) -> pd.DataFrame:
    """The rows cross-validated and fitted: the dataset's ``train`` rows sorted by (event_timestamp, symbol).

    Every column at once, for the audit and tests; training itself reads :func:`load_training_data`.
    """
    return dataset.rows("train").sort_values(["event_timestamp", "symbol"], kind="stable").reset_index(drop=True)


def bar_calendar(dataset: Dataset) -> np.ndarray:
    """The embargo's calendar, one for hold-out and CV: distinct t0 and t1 of all the dataset's rows (int64 ns)."""
    times = [np.unique(np.concatenate([to_ns(p["event_timestamp"]), to_ns(p["t1"])]))
             for p in dataset.parts(["event_timestamp", "t1"])]  # fmt: skip
    return split_invariants.bar_calendar(np.concatenate(times), np.array([], dtype=np.int64))


def purged_splits(cv: CVConfig | Mapping[str, Any], t0: np.ndarray, t1: np.ndarray, calendar: np.ndarray):
    """The configured splitter and its (train, test) positions over rows with these t0 and t1 (int64 ns), a
    fold at a time, the embargo counted on ``calendar``: the folds train, importance and meta-label share."""
    splitter = make_cv(cv)
    # t1 indexed by t0, as views of the int64 arrays (UTC, naive): the splitter reads them as int64 again.
    label_times = pd.Series(t1.view("M8[ns]"), index=pd.DatetimeIndex(t0.view("M8[ns]"), copy=False), copy=False)
    splits = splitter.split(np.empty((len(t0), 0)), t1=label_times, bar_times=calendar)
    return splitter, ((np.asarray(a), np.asarray(b)) for a, b in splits)  # one fold's positions at a time


def iter_cv_splits(
    dataset: Dataset, cv: CVConfig | Mapping[str, Any]
) -> tuple[Any, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """The configured splitter and its (train, test) positions over :func:`training_rows`, a fold at a time,
    embargo counted on :func:`bar_calendar`: what ``train`` fits on and what ``verify-leakage`` audits (reads
    no feature)."""
    layout = _layout(dataset)
    return purged_splits(cv, layout.t0, layout.t1, layout.calendar)


def cv_splits(dataset: Dataset, cv: CVConfig | Mapping[str, Any]) -> tuple[Any, list[tuple[np.ndarray, np.ndarray]]]:
    """:func:`iter_cv_splits` with every fold at once."""
    splitter, splits = iter_cv_splits(dataset, cv)
    return splitter, list(splits)


def train(dataset: Dataset, config: Config, progress: Callable[[str], None] = log.info) -> TrainingReport:
    """Cross-validate, fit and evaluate the baseline on a built dataset; nothing is logged here.

    Only the dataset's ``train`` rows are cross-validated (purged K-fold or CPCV from ``config.cv``),
    each fold refitting the scaler, class-balance weights and early stopping on its own training rows;
    then one final fit on all training rows is scored on the untouched ``validation`` rows (the hold-out).
    Trivial baselines are scored on the same folds so every metric has something to beat. The rows are
    read once into one float64 matrix on disk (:func:`load_training_data`); folds are positions into it.
    """
    with stage("load"):
        data = load_training_data(dataset, model_features(dataset.features, config.model.feature_families))
    with data.X:  # its scratch file goes when the run ends
        return _cross_validate_and_fit(data, config, progress)


@dataclass
class CrossValidation:
    """The purged CV of one configuration on the training rows: its folds and out-of-sample path returns."""

    classes: list[int]
    splitter: Any = field(repr=False)
    folds: list[Fold] = field(repr=False)
    path_returns: pd.DataFrame = field(repr=False)  # OOS daily returns, a column per path
    path_sharpes: list[float] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, float]:
        return summarise([f.metrics for f in self.folds])


def cross_validate(data: TrainingData, config: Config, progress: Callable[[str], None] = log.info) -> CrossValidation:
    """Purged K-fold or CPCV (``config.cv``) of the training rows alone: what ``tune`` scores each trial on."""
    features, rows, X = data.features, data.train, data.X
    if rows.empty:
        raise InputError("the dataset has no training rows; rebuild it with a longer period")
    classes = sorted(int(c) for c in rows["target"].unique())
    if len(classes) < 2:
        raise InputError(f"the training rows hold a single class ({classes[0]}); widen the barriers or the period")
    y = rows["target"].to_numpy()
    t0, t1 = data.t0, data.t1
    base = data.base_weight
    balance = config.weights.class_balance
    cost = config.backtest.cost_bps

    splitter, splits = purged_splits(config.cv, t0, t1, data.calendar)
    model = config.model
    progress(
        f"LightGBM on {lgbm_threads()} thread(s): at most {model.num_boost_round} rounds a fit, stopped after "
        f"{model.early_stopping_rounds} rounds without improvement on the fit's purged early-stopping slice "
        f"(its last {model.early_stopping_fraction:.0%} of dates)"
    )
    folds: list[Fold] = []
    for index, (train_idx, test_idx) in enumerate(splits):
        with stage(f"fold {index}"):
            with stage("fit"):
                fitted = fit_with_early_stopping(
                    X,
                    y[train_idx],
                    fold_weights(base[train_idx], y[train_idx], balance),
                    t0[train_idx],
                    t1[train_idx],
                    config.model,
                    rows=train_idx,
                    features=features,
                )
            test = rows.iloc[test_idx]
            with stage("predict"):
                proba = fitted.predict_proba(X, test_idx)
            with stage("metrics + backtest"):
                metrics, _ = score(test, proba, classes, cost)
                metrics["best_iteration"] = fitted.best_iteration
                fold_baselines = baselines(y[train_idx], test, classes, cost)
        fold = Fold(index, len(train_idx), len(test_idx), fitted.best_iteration, metrics, fold_baselines,
                    runs_of(test_idx), compact_proba(proba), runs_of(train_idx), fitted)  # fmt: skip
        folds.append(fold)
        progress(
            f"fold {index}: {len(train_idx):,} train / {len(test_idx):,} test rows, AUC {metrics['roc_auc']:.3f}, "
            f"best iteration {fitted.best_iteration} of {fitted.rounds} rounds"
        )
    with stage("paths backtest"):
        path_returns = _path_returns(splitter, rows, folds, classes, cost)
    return CrossValidation(classes, splitter, folds, path_returns, _cpcv_path_sharpes(splitter, path_returns))


def _cross_validate_and_fit(data: TrainingData, config: Config, progress: Callable[[str], None]) -> TrainingReport:
    features, rows, holdout_rows, X = data.features, data.train, data.holdout, data.X
    if rows.empty or holdout_rows.empty:
        raise InputError("the dataset needs both training and validation rows; rebuild it with a longer period")
    cv = cross_validate(data, config, progress)
    classes, folds, splitter = cv.classes, cv.folds, cv.splitter
    y = rows["target"].to_numpy()
    t0, t1 = data.t0, data.t1
    base = data.base_weight
    balance = config.weights.class_balance
    cost = config.backtest.cost_bps

    path_returns, path_sharpes = cv.path_returns, cv.path_sharpes
    # Every training row: X's first n_train rows (no array of positions).
    with stage("final"):
        with stage("fit"):
            final = fit_with_early_stopping(X, y, fold_weights(base, y, balance), t0, t1, config.model,
                                            features=features)  # fmt: skip
        with stage("predict"):
            holdout_proba = final.predict_proba(X, data.holdout_positions)
        with stage("metrics + backtest"):
            holdout, holdout_backtest = score(holdout_rows, holdout_proba, classes, cost)
            holdout["best_iteration"] = final.best_iteration
            holdout_baselines = baselines(y, holdout_rows, classes, cost)
    top_k = config.cross_section.top_k
    with stage("cross sections"):
        cross_sections = {"cv": of_cv(folds, classes, rows, top_k, cost),
                          "holdout": of_rows(holdout_rows, score_of(holdout_proba, classes), top_k, cost)}  # fmt: skip
    progress(
        f"final fit: best iteration {final.best_iteration} of {final.rounds} rounds; hold-out: {len(holdout_rows):,} "
        f"rows, AUC {holdout['roc_auc']:.3f}, Sharpe {holdout_backtest.sharpe:.2f}"
    )
    return TrainingReport(
        classes=classes,
        features=features,
        folds=folds,
        cv_summary=cv.summary,
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
        calendar_bars=len(data.calendar),
        input_example=pd.DataFrame(X[data.n_train : data.n_train + 5], columns=features),
        # From the matrix the run already holds, a column at a time (rereading the dataset's parts for it
        # was the peak of a 1.26M-sample run).
        input_distribution=input_distribution(
            ((name, X.column(j)[: data.n_train]) for j, name in enumerate(features)), data.n_train, data.t0
        ),
        cross_sections=cross_sections,
    )


def _path_returns(
    splitter: Any, rows: pd.DataFrame, folds: list[Fold], classes: list[int], cost: float
) -> pd.DataFrame:
    """Out-of-sample daily returns of every backtest path: CPCV's paths, or the K folds' test sets as one path.

    A path's only output is its backtest's daily returns, so only positions are assembled (a float a row)
    and only the backtest runs: scoring every metric of a path's class probabilities over all training rows
    at once was a run's peak at 25M samples (1.7 GB above what it held)."""
    if not isinstance(splitter, CombinatorialPurgedKFold):
        pieces = ((fold.test_positions, fold.proba) for fold in folds)
        return pd.DataFrame({"path_0": _path_daily(rows, pieces, classes, cost)})
    fold_ids = splitter.fold_ids(rows["event_timestamp"])
    paths = {}
    for number, path in enumerate(splitter.backtest_paths()):
        paths[f"path_{number}"] = _path_daily(rows, _path_pieces(folds, path, fold_ids), classes, cost)
    return pd.DataFrame(paths)


def _path_pieces(folds: list[Fold], path: Any, fold_ids: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A CPCV path's (positions, class probabilities): of each split on the path, its test rows in that group."""
    for cv_fold, split in enumerate(path):
        fold = folds[int(split)]
        at = fold.test_positions
        mine = fold_ids[at] == cv_fold
        yield at[mine], fold.proba[mine]


def _path_daily(rows: pd.DataFrame, pieces: Iterable[tuple[np.ndarray, np.ndarray]], classes: list[int],
                cost: float) -> pd.Series:  # fmt: skip
    """The backtest's daily returns of the positions the predictions ``pieces`` (positions, class probabilities)
    give; a row no piece covers holds what zero scores give."""
    position = np.full(len(rows), signal(np.zeros((1, len(classes))), classes)[1][0])
    for at, proba in pieces:
        position[at] = signal(proba, classes)[1]  # per row, as signal() of the whole path's probabilities
    return backtest(rows["symbol"], rows["event_timestamp"], position, rows["next_ret"].to_numpy(), cost).daily


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
