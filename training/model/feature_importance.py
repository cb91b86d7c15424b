"""Feature importance under purged cross-validation (AFML ch. 8; clustered MDA from MLAM ch. 4).

LightGBM's gain importance of the final model is in-sample and favours features with many split points;
these four read the same purged folds the baseline is scored on, so a feature only looks important when
it helps on rows its model never saw (MDA, clustered MDA, SFI) or at least on every fold's own fit (MDI):

- **MDI**: each fold model's total gain, normalised to sum to 1 (in-sample, the cheap reference);
- **MDA**: on each purged test fold, the rise in (sample-weighted) log loss when one feature's values are
  permuted, as AFML's ``(score - permuted) / -permuted`` with score = -log loss;
- **SFI**: each feature alone, fitted and scored on the same folds: its out-of-sample log loss below that of
  the training class shares (AFML's -log loss less a constant per fold, so > 0 means the feature alone beats
  knowing nothing; no substitution effect: a feature whose twin exists keeps its own score);
- **clustered MDA**: features clustered on the correlation distance ``sqrt((1 - rho) / 2)`` (average linkage,
  the number of clusters the one with the highest silhouette), each cluster's columns permuted together,
  so twins cannot hide each other's importance as they do in MDA.

Every method reports its mean and standard deviation over the folds, and each fold's value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss

from training.config import ModelConfig
from training.model.estimator import fit_with_early_stopping
from training.model.trainer import fold_weights, load_training_data, purged_splits

METHODS = ("mdi", "mda", "sfi", "clustered_mda")


@dataclass
class Importance:
    """Per method a frame (index: feature or cluster; columns mean, std, fold_0 …), and the clusters."""

    frames: dict[str, pd.DataFrame]
    clusters: dict[str, list[str]] = field(default_factory=dict)

    def ranking(self, method: str) -> list[str]:
        return list(self.frames[method].sort_values("mean", ascending=False).index)

    def summary(self) -> dict[str, Any]:
        """JSON: per method its names ranked, with mean and std; the clusters' members."""
        return {
            "methods": {
                method: [
                    {"name": str(name), "mean": float(row["mean"]), "std": float(row["std"])}
                    for name, row in frame.sort_values("mean", ascending=False).iterrows()
                ]
                for method, frame in self.frames.items()
            },
            "clusters": self.clusters,
        }


def correlation(X: Any, rows: np.ndarray, batch: int = 65_536) -> np.ndarray:
    """Pearson correlation of the columns of ``X`` over ``rows``, from sums over a batch of rows at a time (the
    run's matrix is never copied whole)."""
    n_features = X.shape[1]
    total, cross = np.zeros(n_features), np.zeros((n_features, n_features))
    for start in range(0, len(rows), batch):
        block = X[rows[start : start + batch]]
        total += block.sum(axis=0)
        cross += block.T @ block
    mean = total / len(rows)
    covariance = cross / len(rows) - np.outer(mean, mean)
    scale = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(np.nan_to_num(covariance / np.outer(scale, scale), nan=0.0), -1.0, 1.0)


def correlation_clusters(rho: np.ndarray, features: list[str], max_clusters: int | None = None) -> dict[str, list[str]]:
    """Features grouped by their correlations ``rho`` (MLAM 4): average linkage on ``sqrt((1 - rho) / 2)``, the
    cut with the highest silhouette among 2 … n - 1 clusters. Unsupervised: it reads features, never labels."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform
    from sklearn.metrics import silhouette_score

    n = len(features)
    if n < 3:
        return {f"c{i}": [name] for i, name in enumerate(features)}
    distance = np.sqrt(np.clip((1.0 - rho) / 2.0, 0.0, None))
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    best, best_score = np.arange(n), -np.inf
    for k in range(2, min(n - 1, max_clusters or n - 1) + 1):
        labels = fcluster(tree, k, criterion="maxclust")
        if len(np.unique(labels)) < 2 or len(np.unique(labels)) >= n:
            continue
        score = silhouette_score(distance, labels, metric="precomputed")
        if score > best_score:
            best, best_score = labels, score
    groups: dict[int, list[str]] = {}
    for name, label in zip(features, best, strict=True):
        groups.setdefault(int(label), []).append(name)
    ordered = sorted(groups.values(), key=lambda members: features.index(members[0]))
    return {f"c{i}:{members[0]}" + ("+" if len(members) > 1 else ""): members for i, members in enumerate(ordered)}


def _loss(y: np.ndarray, proba: np.ndarray, weight: np.ndarray, classes: list[int]) -> float:
    return float(log_loss(y, np.clip(proba, 1e-15, 1 - 1e-15), sample_weight=weight, labels=classes))


def _frame(values: dict[str, list[float]]) -> pd.DataFrame:
    folds = pd.DataFrame(values).T
    folds.columns = [f"fold_{i}" for i in folds.columns]
    return pd.concat([folds.mean(axis=1).rename("mean"), folds.std(axis=1, ddof=0).rename("std"), folds], axis=1)


def _column(X: Any, j: int) -> np.ndarray:
    return X[:, j] if isinstance(X, np.ndarray) else X.column(j)


@dataclass
class _Fit:
    """A fold's fitted model: class probabilities of rows given as an array, and its in-sample importance."""

    predict_proba: Callable[[np.ndarray], np.ndarray]
    mdi: np.ndarray


def _fit(estimator: Any, model: ModelConfig, X: Any, train: np.ndarray, y: np.ndarray, weight: np.ndarray,
         t0: np.ndarray, t1: np.ndarray, features: list[str]) -> _Fit:  # fmt: skip
    """The baseline as ``train`` fits it (``estimator`` None), or a clone of a scikit-learn classifier."""
    if estimator is None:
        fitted = fit_with_early_stopping(X, y[train], weight, t0[train], t1[train], model, rows=train,
                                         features=features)  # fmt: skip
        gain = fitted.pipeline.named_steps["model"].booster_.feature_importance(importance_type="gain")
        return _Fit(fitted.predict_proba, gain)
    from sklearn.base import clone

    fitted = clone(estimator).fit(_rows(X, train, len(features)), y[train], sample_weight=weight)
    gain = getattr(fitted, "feature_importances_", np.zeros(len(features)))
    return _Fit(fitted.predict_proba, np.asarray(gain, dtype=np.float64))


def _rows(X: Any, rows: np.ndarray, n_features: int) -> np.ndarray:
    return np.column_stack([_column(X, j)[rows] for j in range(n_features)])


def compute(
    X: Any,
    y: np.ndarray,
    base_weight: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    model: ModelConfig,
    features: list[str],
    balance: bool = True,
    methods: tuple[str, ...] = METHODS,
    seed: int = 0,
    estimator: Any = None,
    progress: Callable[[str], None] | None = None,
) -> Importance:
    """The ``methods`` of :data:`METHODS` over the (train, test) positions ``splits`` of the rows of ``X``.

    ``X`` holds the rows (an array, or the run's :class:`FeatureMatrix`); ``y``, ``base_weight``, ``t0`` and
    ``t1`` are aligned with them. Each fold fits the baseline as ``train`` does (purged early stopping,
    class balance of the fold's rows), or ``estimator``, a scikit-learn classifier, is cloned and fitted with
    the same weights (its ``feature_importances_`` as MDI). Test rows' log losses are weighted by their base
    weight (uniqueness), as AFML weights them.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown importance methods {unknown}; known: {', '.join(METHODS)}")
    rng = np.random.default_rng(seed)
    classes = sorted(int(c) for c in np.unique(y))
    train_rows = np.unique(np.concatenate([train for train, _ in splits]))
    clusters = correlation_clusters(correlation(X, train_rows), features) if "clustered_mda" in methods else {}
    mdi: dict[str, list[float]] = {f: [] for f in features}
    mda: dict[str, list[float]] = {f: [] for f in features}
    sfi: dict[str, list[float]] = {f: [] for f in features}
    cmda: dict[str, list[float]] = {c: [] for c in clusters}
    for index, (train, test) in enumerate(splits):
        weight = fold_weights(base_weight[train], y[train], balance)
        test_weight = base_weight[test]
        if {"mdi", "mda", "clustered_mda"} & set(methods):
            fitted = _fit(estimator, model, X, train, y, weight, t0, t1, features)
            gain = fitted.mdi
            for name, value in zip(features, gain / gain.sum() if gain.sum() > 0 else gain, strict=True):
                mdi[name].append(float(value))
            held = _rows(X, test, len(features))
            score = _loss(y[test], fitted.predict_proba(held), test_weight, classes)
            groups = [(mda, f, [j]) for j, f in enumerate(features)] if "mda" in methods else []
            groups += [(cmda, c, [features.index(m) for m in members]) for c, members in clusters.items()]
            for out, name, columns in groups:
                permuted = held.copy()
                permuted[:, columns] = held[rng.permutation(len(held))][:, columns]  # the group's rows together
                loss = _loss(y[test], fitted.predict_proba(permuted), test_weight, classes)
                out[name].append((loss - score) / loss)
        if "sfi" in methods:
            shares = np.array([weight[y[train] == c].sum() for c in classes]) / weight.sum()
            prior = _loss(y[test], np.tile(shares, (len(test), 1)), test_weight, classes)
            for j, name in enumerate(features):
                alone = _column(X, j)[:, None]
                single = _fit(estimator, model, alone, train, y, weight, t0, t1, [name])
                sfi[name].append(prior - _loss(y[test], single.predict_proba(alone[test]), test_weight, classes))
        if progress:
            progress(f"importance fold {index}: {len(train):,} train / {len(test):,} test rows")
    frames = {"mdi": mdi, "mda": mda, "sfi": sfi, "clustered_mda": cmda}
    return Importance({m: _frame(frames[m]) for m in methods}, clusters if "clustered_mda" in methods else {})


def of_dataset(dataset: Any, config: Any, methods: tuple[str, ...] = METHODS,
               progress: Callable[[str], None] | None = None) -> Importance:  # fmt: skip
    """The importance of a built dataset's features under the purged CV ``train`` scores it with (``config.cv``),
    on its ``train`` rows only: the hold-out is never read."""
    data = load_training_data(dataset, holdout=False)
    with data.X:
        _, splits = purged_splits(config.cv, data.t0, data.t1, data.calendar)
        y = data.train["target"].to_numpy()
        return compute(data.X, y, data.base_weight, data.t0, data.t1, list(splits), config.model, data.features,
                       balance=config.weights.class_balance, methods=methods, seed=config.model.seed,
                       progress=progress)  # fmt: skip


def write(result: Importance, folder: Any) -> None:
    """``<method>.csv`` per method, ``importance.json`` (rankings and clusters) and ``importance.png``."""
    import json
    from pathlib import Path

    from training.model import plots

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for method, frame in result.frames.items():
        frame.sort_values("mean", ascending=False).to_csv(folder / f"{method}.csv", index_label="name")
    (folder / "importance.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    plots.importance_methods(result.frames, folder / "importance.png")
