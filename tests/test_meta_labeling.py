"""Meta-labeling: the secondary model learns when the primary's side is right, and its sized bets beat the
unsized primary, out of sample under purged CV and on the hold-out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.config import load_config
from training.dataset.artifact import Dataset
from training.errors import InputError
from training.model.meta_labeling import crossover_sides, meta_label, meta_labels

FEATURES = ["fast", "slow", "regime", "noise"]


def regime_dataset(seed: int = 5, n_dates: int = 360, n_symbols: int = 4) -> Dataset:
    """A crossover side that is right exactly when ``regime`` > 0 (10 % of outcomes flipped), wrong otherwise."""
    rng = np.random.default_rng(seed)
    day = pd.Timestamp("2015-01-02 21:00", tz="UTC") + pd.to_timedelta(np.arange(n_dates), "D")
    dates = np.repeat(np.arange(n_dates), n_symbols)
    n = len(dates)
    frame = pd.DataFrame({name: rng.normal(size=n) for name in FEATURES})
    side = crossover_sides(frame["fast"], frame["slow"])
    right = np.where(frame["regime"] > 0, 1.0, -1.0) * np.where(rng.random(n) < 0.1, -1.0, 1.0)
    ret = side * right * np.abs(rng.normal(0.02, 0.01, size=n))
    cut = int(n_dates * 0.7)
    frame = frame.assign(
        symbol=[f"S{i}" for i in np.tile(np.arange(n_symbols), n_dates)],
        event_timestamp=day[dates],
        t1=day[np.minimum(dates + 3, n_dates - 1)],
        target=(ret > 0).astype(int),
        ret=ret,
        next_ret=ret / 3,
        split=np.where(dates < cut - 3, "train", np.where(dates >= cut + 3, "validation", "purged")),
    )
    return Dataset({"features": FEATURES, "rows": n}, frame=frame)


def _config(cv: dict | None = None, **meta):
    return load_config(overrides={"meta_labeling": {"fast": "fast", "slow": "slow", **meta}, "cv": cv or {}})


@pytest.mark.parametrize("primary", ["crossover", "model"])
def test_the_meta_model_learns_when_the_side_is_right_and_sized_bets_beat_the_primary(primary):
    """Crossover: a side right half the time, and the meta model finds when. Model: the baseline learns the
    interaction itself (its out-of-fold sides are right about 80 % of the time); the meta model still adds
    precision. Scores are out of sample: every training row once (purged CV), then the hold-out."""
    dataset = regime_dataset()
    result = meta_label(dataset, _config(primary=primary))
    for scores in (result.cv.metrics, result.holdout.metrics):
        if primary == "crossover":
            assert scores["primary_precision"] == pytest.approx(0.5, abs=0.08)
            assert scores["precision"] > scores["primary_precision"] + 0.25, scores
            assert scores["f1"] > 0.8, scores
            assert scores["sized_sharpe"] > scores["primary_sharpe"] + 1.0, scores
        else:
            assert scores["primary_precision"] > 0.7, scores
            assert scores["precision"] > scores["primary_precision"], scores
            assert scores["sized_sharpe"] > 1.0, scores
        assert 0 < scores["mean_abs_size"] <= 1
    frame = dataset.frame
    assert len(result.folds) == 5
    assert result.cv.metrics["rows"] == (frame["split"] == "train").sum()
    assert result.holdout.metrics["rows"] == (frame["split"] == "validation").sum()
    assert list(result.cv.daily.columns) == ["primary", "filtered", "sized"]


def test_meta_labels_read_only_the_label_window_return():
    assert list(meta_labels(np.array([1, -1, 1, -1]), np.array([0.02, 0.02, -0.01, -0.01]))) == [1, 0, 0, 1]


def test_a_cpcv_primary_is_evaluated_by_purged_kfold_over_its_groups_and_unknown_features_are_refused():
    """tune's winner uses CPCV; meta-labeling needs one out-of-sample side per row, so it runs purged K-fold
    with K = the CPCV groups (the same folds as purged_kfold with that K, the same scores)."""
    dataset = regime_dataset(n_dates=120)
    cpcv = meta_label(dataset, _config(cv={"method": "cpcv", "n_groups": 4, "test_groups": 2}))
    kfold = meta_label(dataset, _config(cv={"method": "purged_kfold", "n_folds": 4}))
    assert len(cpcv.folds) == 4 and cpcv.folds == kfold.folds
    assert cpcv.holdout.metrics == kfold.holdout.metrics
    with pytest.raises(InputError, match="feature 'sma_5_rel' is not in the dataset"):
        meta_label(dataset, load_config())


def _fits_of_each_fold(monkeypatch, dataset: Dataset, primary: str, folds: int = 5) -> list[list[np.ndarray]]:
    """The rows of every LightGBM fit meta_label made, grouped by the outer fold whose scores they produce."""
    from training.model import meta_labeling

    calls: list[np.ndarray] = []
    real = meta_labeling.fit_with_early_stopping

    def recording(*args, rows=None, **kwargs):
        calls.append(np.asarray(rows))
        return real(*args, rows=rows, **kwargs)

    monkeypatch.setattr(meta_labeling, "fit_with_early_stopping", recording)
    meta_label(dataset, _config(primary=primary))
    per_fold = folds + 2 if primary == "model" else 1  # inner primaries, the outer primary, the meta model
    return [calls[i * per_fold : (i + 1) * per_fold] for i in range(folds)]


def _touching(fits: list[np.ndarray], test: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> int:
    """Rows of ``fits`` whose label window [t0, t1] overlaps the test fold's span: what purging removes."""
    start, end = t0[test].min(), t1[test].max()
    return sum(int(((t0[rows] <= end) & (t1[rows] >= start)).sum()) for rows in fits)


@pytest.mark.parametrize("primary", ["crossover", "model"])
def test_no_fit_behind_a_fold_score_saw_a_label_window_of_that_fold(monkeypatch, primary):
    """Every fit that feeds a fold's out-of-sample scores (the meta model, and for the model primary the inner
    and outer primaries giving the sides) is purged against that fold; a fit on all rows would not be."""
    from training.model.trainer import load_training_data, purged_splits

    dataset = regime_dataset(n_dates=200)
    data = load_training_data(dataset)
    with data.X:
        _, splits = purged_splits(_config().cv, data.t0, data.t1, data.calendar)
    fits = _fits_of_each_fold(monkeypatch, dataset, primary)
    for (_, test), fold_fits in zip(splits, fits, strict=True):
        assert fold_fits and _touching(fold_fits, test, data.t0, data.t1) == 0
        assert _touching([np.arange(data.n_train)], test, data.t0, data.t1) > 0  # the check sees a leaky fit
