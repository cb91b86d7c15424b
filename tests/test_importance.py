"""Feature importance under purged CV: a planted feature ranks first by all four methods, and the MDA of a
feature that leaks the label through overlapping label windows collapses once the folds are purged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from training.config import default_config
from training.model import feature_importance as importance
from training.validation.purged_cv import PurgedKFold

DAY = np.int64(86_400 * 10**9)


def _splits(t0: np.ndarray, t1: np.ndarray, embargo: float = 0.01) -> list[tuple[np.ndarray, np.ndarray]]:
    label_times = pd.Series(t1.view("M8[ns]"), index=pd.DatetimeIndex(t0.view("M8[ns]")))
    return list(PurgedKFold(n_splits=5, embargo=embargo).split(np.empty((len(t0), 0)), t1=label_times))


def _unpurged(splits: list[tuple[np.ndarray, np.ndarray]], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The same test folds, every other row trains: K-fold without purging or embargo."""
    return [(np.setdiff1d(np.arange(n), test), test) for _, test in splits]


def planted(seed: int = 7, n_dates: int = 300, n_symbols: int = 4):
    """One informative feature among noise (two of the noise features are near-twins: a real cluster)."""
    rng = np.random.default_rng(seed)
    dates = np.repeat(np.arange(n_dates, dtype=np.int64), n_symbols)
    t0, t1 = dates * DAY, (dates + 5) * DAY
    n = len(dates)
    noise = rng.normal(size=(n, 5))
    twin = noise[:, :1] + 0.1 * rng.normal(size=(n, 1))
    signal = rng.normal(size=(n, 1))
    X = np.hstack([noise, twin, signal])
    y = (signal[:, 0] + 0.7 * rng.normal(size=n) > 0).astype(int)
    features = ["noise_0", "noise_1", "noise_2", "noise_3", "noise_4", "twin_0", "signal"]
    return X, y, t0, t1, features


def test_planted_feature_ranks_first_by_every_method():
    X, y, t0, t1, features = planted()
    result = importance.compute(X, y, np.ones(len(y)), t0, t1, _splits(t0, t1), default_config().model, features)
    for method in ("mdi", "mda", "sfi"):
        assert result.ranking(method)[0] == "signal", (method, result.frames[method]["mean"])
        assert len(result.frames[method].filter(like="fold_").columns) == 5  # a value per fold: the spread
    assert result.frames["sfi"].loc["signal", "mean"] > 0.1  # log loss below the class prior's: informative alone
    top_cluster = result.ranking("clustered_mda")[0]
    assert result.clusters[top_cluster] == ["signal"], result.clusters
    assert any(set(members) >= {"noise_0", "twin_0"} for members in result.clusters.values()), result.clusters
    assert (result.frames["mda"]["std"] > 0).all()


def leaking(seed: int, n_dates: int = 200, n_symbols: int = 20, length: int = 40):
    """Labels that stay fixed through 40-bar episodes (one outcome per symbol and episode, the label windows
    running to the episode's end), and a feature that names the window: its symbol and end time. Folds of 40
    dates cut every episode that crosses them, so without purging the training rows of a test row's own
    episode tell its label; purging drops every training row whose window overlaps the test fold."""
    rng = np.random.default_rng(seed)
    dates = np.repeat(np.arange(n_dates, dtype=np.int64), n_symbols)
    symbol = np.tile(np.arange(n_symbols), n_dates)
    episode = (dates + length // 2) // length
    end = episode * length + length // 2 - 1
    t0, t1 = dates * DAY, np.maximum(end, dates) * DAY
    y = rng.integers(0, 2, size=(n_symbols, episode.max() + 1))[symbol, episode]
    X = np.column_stack([rng.normal(size=(len(dates), 3)), symbol * 1000.0 + end])
    return X, y, t0, t1, ["noise_0", "noise_1", "noise_2", "window"]


@pytest.mark.parametrize("seed", range(5))
def test_mda_of_a_label_leaking_feature_collapses_under_purging(seed: int):
    """A memorising model (a fully grown tree) learns each window's label from the feature: on unpurged folds
    its MDA is large, on the purged folds (same test rows) the windows it saw never reach the test fold."""
    X, y, t0, t1, features = leaking(seed)
    purged = _splits(t0, t1)
    tree = DecisionTreeClassifier(min_samples_leaf=5, random_state=0)

    def mda(splits):
        result = importance.compute(X, y, np.ones(len(y)), t0, t1, splits, default_config().model, features,
                                    methods=("mda",), estimator=tree)  # fmt: skip
        return result.frames["mda"]["mean"]

    leaky, clean = mda(_unpurged(purged, len(y))), mda(purged)
    assert leaky["window"] > 0.7, leaky
    assert clean["window"] < leaky["window"] / 5, (clean, leaky)
    assert all(len(set(np.unique(t1[train])) & set(np.unique(t1[test]))) == 0 for train, test in purged)


def test_unknown_method_is_refused():
    X, y, t0, t1, features = planted(n_dates=60)
    with pytest.raises(ValueError, match="unknown importance methods"):
        importance.compute(X, y, np.ones(len(y)), t0, t1, _splits(t0, t1), default_config().model, features,
                           methods=("shap",))  # fmt: skip


def test_correlation_in_batches_is_numpys():
    X = np.random.default_rng(1).normal(size=(1000, 4)) @ np.array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0],
                                                                      [0, 0, 0, 0]])  # fmt: skip
    rows = np.arange(0, 1000, 3)
    with np.errstate(invalid="ignore"):  # the constant column: numpy's NaN, 0 here
        expected = np.nan_to_num(np.corrcoef(X[rows], rowvar=False), nan=0.0)
    np.testing.assert_allclose(importance.correlation(X, rows, batch=64), expected, atol=1e-9)
