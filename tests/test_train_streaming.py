"""Training without copies: the streamed matrix and fold fits give exactly what copied frames gave.

The trainer reads the dataset's parts once into one float64 matrix and fits every fold on positions into
it, LightGBM reading the scaled rows a batch at a time. Here that is checked bit for bit against the
straightforward way (a Pipeline fitted on copied frames, as the trainer did before), and a dataset written
in several parts against the same rows in one part.
"""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import run_cli
from training.leakage.check_preprocessing import recorded_positions
from training.model.estimator import early_stopping_slice, fit_with_early_stopping, lgbm_params
from training.model.position_runs import positions_of, runs_of, runs_within


def _model(rounds: int = 40):
    from training.config import default_config

    return default_config().model.model_copy(
        update={"num_boost_round": rounds, "early_stopping_rounds": 5, "early_stopping_fraction": 0.2}
    )


def _copied_frames_fit(X: pd.DataFrame, y, weight, t0, t1, model):
    """The reference: RobustScaler fitted on a copy of the fit rows, LGBMClassifier.fit on scaled copies.

    The watched rows go in as ``eval_set``, whose labels LGBMClassifier encodes as it encodes ``y``; its
    ``eval_X``/``eval_y`` (LightGBM 4.7) pass the labels raw, which for the multiclass target (-1, 0, +1)
    scored early stopping against a class -1 that does not exist (the trainer used them until the fit
    streamed; binary 0/1 labels encode to themselves, so binary models are unchanged).
    """
    import lightgbm
    from lightgbm import LGBMClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler

    fit, watch = early_stopping_slice(t0, t1, model.early_stopping_fraction)
    scaler = RobustScaler().set_output(transform="pandas").fit(X.iloc[fit])
    classifier = LGBMClassifier(**lgbm_params(model, len(np.unique(y))))
    classifier.fit(scaler.transform(X.iloc[fit]), y[fit], sample_weight=weight[fit],
                   eval_set=[(scaler.transform(X.iloc[watch]), y[watch])], eval_sample_weight=[weight[watch]],
                   callbacks=[lightgbm.early_stopping(model.early_stopping_rounds, verbose=False)])  # fmt: skip
    return Pipeline([("scaler", scaler), ("model", classifier)])


def _panel(seed: int, n_classes: int):
    """Features with thousands of distinct values (more than max_bin, so binning has choices to make),
    zeros among them, different scales and offsets."""
    rng = np.random.default_rng(seed)
    n_dates, n_symbols = 700, 4
    t0 = np.repeat(np.arange(n_dates).astype("datetime64[D]"), n_symbols)
    t1 = t0 + rng.integers(1, 6, len(t0)).astype("timedelta64[D]")
    raw = rng.normal(size=(len(t0), 5)) * [1, 10, 0.01, 1000, 3] + [0, 5, -1, 300, 0]
    raw[rng.random(raw.shape) < 0.05] = 0.0
    X = pd.DataFrame(raw, columns=list("abcde"))
    score = X["a"] + X["b"] / 10 + rng.normal(size=len(X))
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1])) - (n_classes == 3)
    return X, y.astype(int), t0, t1, rng.uniform(0.5, 2.0, len(X))


# The reference fits with LightGBM's eval_set on purpose (see _copied_frames_fit), which LightGBM 4.7 deprecates.
@pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")
@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_fit_on_positions_into_the_matrix_equals_a_pipeline_fitted_on_copies(n_classes):
    import skops.io

    X, y, t0, t1, weight = _panel(7, n_classes)
    rows = np.sort(np.random.default_rng(1).choice(len(X), size=2200, replace=False))  # a fold's train rows
    test = np.setdiff1d(np.arange(len(X)), rows)
    matrix = X.to_numpy()
    before = matrix.copy()
    streamed = fit_with_early_stopping(matrix, y[rows], weight[rows], t0[rows], t1[rows], _model(), rows=rows,
                                       features=list(X.columns))  # fmt: skip
    reference = _copied_frames_fit(X.iloc[rows], y[rows], weight[rows], t0[rows], t1[rows], _model())
    np.testing.assert_array_equal(matrix, before)  # scaling a batch never writes into the matrix

    ours, theirs = streamed.pipeline.named_steps["scaler"], reference.named_steps["scaler"]
    np.testing.assert_array_equal(ours.center_, theirs.center_)
    np.testing.assert_array_equal(ours.scale_, theirs.scale_)
    assert sorted(vars(ours)) == sorted(vars(theirs))
    ours, theirs = streamed.pipeline.named_steps["model"], reference.named_steps["model"]
    assert sorted(vars(ours)) == sorted(vars(theirs))
    assert ours.best_iteration_ == theirs.best_iteration_ and ours.booster_.num_trees() == theirs.booster_.num_trees()
    trees = [m.booster_.model_to_string().split("\nparameters:")[0] for m in (ours, theirs)]  # not the params
    assert trees[0] == trees[1]  # echo, where the data seed is named explicitly
    assert ours.evals_result_ == theirs.evals_result_ and ours.best_score_ == theirs.best_score_
    expected = reference.predict_proba(X.iloc[test])
    np.testing.assert_array_equal(streamed.predict_proba(matrix, test), expected)  # batched, from the matrix
    np.testing.assert_array_equal(streamed.pipeline.predict_proba(X.iloc[test]), expected)  # as served
    assert list(streamed.pipeline.named_steps["model"].feature_names_in_) == list(X.columns)
    dumped = skops.io.get_untrusted_types(data=skops.io.dumps(streamed.pipeline))
    assert dumped == skops.io.get_untrusted_types(data=skops.io.dumps(reference))


def test_the_final_fit_without_positions_or_float64_weights_is_the_same_model():
    """The trainer's final fit passes no positions (X's first len(y) rows; X also holds the hold-out rows
    after them) and float32 weights (what LightGBM keeps): the same trees as positions and float64 weights."""
    X, y, t0, t1, weight = _panel(11, 2)
    n = 2000  # the "training" rows; the rest of the matrix stands for the hold-out
    matrix = X.to_numpy()
    explicit = fit_with_early_stopping(matrix, y[:n], weight[:n], t0[:n], t1[:n], _model(), rows=np.arange(n),
                                       features=list(X.columns))  # fmt: skip
    implicit = fit_with_early_stopping(matrix, y[:n], weight[:n].astype(np.float32), t0[:n], t1[:n], _model(),
                                       features=list(X.columns))  # fmt: skip
    trees = [f.pipeline.named_steps["model"].booster_.model_to_string() for f in (explicit, implicit)]
    assert trees[0] == trees[1]
    fields = ("fit_rows", "early_stopping_rows", "purged_rows", "best_iteration")
    assert [getattr(implicit, f) for f in fields] == [getattr(explicit, f) for f in fields]
    np.testing.assert_array_equal(implicit.fit_runs, explicit.fit_runs)
    rest = np.arange(n, len(X))
    np.testing.assert_array_equal(implicit.predict_proba(matrix, rest), explicit.predict_proba(matrix, rest))


def _digest(report) -> dict:
    folds = [(f.index, f.train_positions.tolist(), f.test_positions.tolist(), f.best_iteration,
              hashlib.sha256(np.ascontiguousarray(f.proba).tobytes()).hexdigest()) for f in report.folds]  # fmt: skip
    return {
        "cv": report.cv_summary,
        "folds": folds,
        "holdout": {k: v for k, v in report.holdout.items()},
        "holdout_proba": hashlib.sha256(np.ascontiguousarray(report.holdout_proba).tobytes()).hexdigest(),
        "path_returns": report.path_returns.to_dict(),
        "calendar_bars": report.calendar_bars,
        "final_fit": report.final.fit_positions.tolist(),
    }


def _config(dataset):
    from training.config import DATASET_SECTIONS, load_config

    built = dataset.metadata["config"]
    return load_config(None, {}).with_sections({section: built[section] for section in DATASET_SECTIONS})


def test_a_dataset_in_several_parts_trains_exactly_like_one_part(bundled_dataset, tmp_path, monkeypatch):
    from training.dataset import artifact
    from training.model.trainer import cv_splits, load_training_data, train, training_rows

    _, one = bundled_dataset
    monkeypatch.setenv("OHLCV_PARTITION_BARS", "3000")  # whole symbols: the 5 bundled ones in 4 parts
    result = run_cli("build-dataset", "--out", str(tmp_path / "parts"))
    assert result.exit_code == 0, result.output
    many = artifact.load(tmp_path / "parts")
    assert len(one.metadata["parts"]) == 1 and len(many.metadata["parts"]) > 2
    assert many.metadata["fingerprint"] == one.metadata["fingerprint"]

    # Parts read with symbol and split as Categoricals merge into the rows a plain read gives, as strings.
    plain, coded = one.read(["symbol", "split", "t1"]), many.read(["symbol", "split", "t1"], ("symbol", "split"))
    for column in ("symbol", "split"):
        assert isinstance(coded[column].dtype, pd.CategoricalDtype)
        assert list(coded[column].cat.categories) == sorted(plain[column].unique())
    pd.testing.assert_frame_equal(coded.astype({"symbol": object, "split": object}), plain)

    data = load_training_data(many)
    rows = training_rows(one)  # the trainer's rows and order, the way it used to take them
    np.testing.assert_array_equal(data.X[: data.n_train], rows[one.features].to_numpy(dtype=np.float64))
    holdout = one.rows("validation")
    np.testing.assert_array_equal(data.X[data.n_train :], holdout[one.features].to_numpy(dtype=np.float64))
    assert data.X.dtype == np.float64 and data.X.shape == (data.n_train + len(holdout), len(one.features))
    for column in ("event_timestamp", "t1", "target", "ret", "next_ret"):
        pd.testing.assert_series_equal(data.train[column], rows[column], check_names=False)
    # The symbol is held as a Categorical (two bytes a row), its categories sorted so it sorts as the strings.
    assert isinstance(data.train["symbol"].dtype, pd.CategoricalDtype)
    categories = list(data.train["symbol"].cat.categories)
    assert categories == sorted(categories) and set(rows["symbol"]) <= set(categories)
    pd.testing.assert_series_equal(data.train["symbol"].astype(object), rows["symbol"], check_names=False)
    for (a, b), (c, d) in zip(cv_splits(many, _config(many).cv)[1], cv_splits(one, _config(one).cv)[1],
                              strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)

    config = _config(one)
    assert _digest(train(many, config, progress=lambda m: None)) == _digest(train(one, config, progress=lambda m: None))


def test_the_bin_sample_of_streamed_rows_is_the_sample_of_the_matrix():
    """Above bin_construct_sample_cnt rows LightGBM bins on a seeded sample; streamed rows sample the same rows."""
    import lightgbm

    from training.config import default_config
    from training.model.estimator import _params, _scaled_rows, fit_scaler

    params = dict(_params(default_config().model, 2), subsample_for_bin=300)  # sampling from 5,000 rows
    X = np.random.default_rng(0).normal(size=(5000, 3)) * [1, 1000, 0.1]
    y = (X[:, 0] > 0).astype(float)
    scaler = fit_scaler(X, np.arange(len(X)), list("abc"))
    streamed = lightgbm.Dataset(_scaled_rows(X, np.arange(len(X)), scaler), label=y, params=params)
    matrix = lightgbm.Dataset((X - scaler.center_) / scaler.scale_, label=y, params=params)
    trees = [lightgbm.train(params, data, 20).model_to_string() for data in (streamed, matrix)]
    assert trees[0] == trees[1]


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=200))
def test_recorded_runs_give_back_the_positions(positions):
    """cv_splits.json stores fold rows as runs [first, last + 1); the audit reads back exactly those rows."""
    runs = runs_of(np.array(positions, dtype=np.int64)).tolist()
    assert all(first < end for first, end in runs) and all(a[1] < b[0] for a, b in itertools.pairwise(runs))
    np.testing.assert_array_equal(recorded_positions(runs), np.unique(np.array(positions, dtype=np.int64)))
    assert recorded_positions(np.unique(positions).tolist()).tolist() == sorted(set(positions))  # older records


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=120), st.data())
def test_runs_within_runs_are_the_positions_they_pick(outer, data):
    """A fit's rows are recorded as positions into its fold's rows, composed run by run: the same runs as
    picking the positions out of arrays would give."""
    outer_positions = np.unique(np.array(outer, dtype=np.int64))
    picked = data.draw(st.lists(st.integers(0, max(len(outer_positions) - 1, 0)), max_size=80)) if len(outer) else []
    inner = np.unique(np.array(picked, dtype=np.int64))
    composed = runs_within(runs_of(outer_positions), runs_of(inner))
    assert composed.tolist() == runs_of(outer_positions[inner]).tolist()
    assert positions_of(composed).tolist() == outer_positions[inner].tolist()


def test_the_training_times_are_views_of_the_rows_not_copies(bundled_dataset):
    """At 25M samples every array held for the whole run counts: t0 and t1 share the rows' columns."""
    from training.model.trainer import load_training_data

    _, dataset = bundled_dataset
    data = load_training_data(dataset)
    with data.X:
        assert np.shares_memory(data.t0, data.train["event_timestamp"].array._ndarray)
        assert np.shares_memory(data.t1, data.train["t1"].array._ndarray)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_model_does_not_depend_on_the_thread_count(n_classes, monkeypatch):
    """LightGBM runs on the cores (column-wise histograms: each feature's rows summed in order on one thread):
    one thread and three give the same trees, early stopping and probabilities."""
    from training.model.estimator import THREADS_ENV

    X, y, t0, t1, weight = _panel(5, n_classes)
    matrix, fits = X.to_numpy(), []
    for threads in ("1", "3"):
        monkeypatch.setenv(THREADS_ENV, threads)
        fitted = fit_with_early_stopping(matrix, y, weight, t0, t1, _model(60), features=list(X.columns))
        model = fitted.pipeline.named_steps["model"]
        assert model.booster_.params["num_threads"] == int(threads) and model.get_params()["n_jobs"] == 1
        fits.append((model.booster_.model_to_string().split("\nparameters:")[0], fitted.best_iteration,
                     fitted.predict_proba(matrix)))  # fmt: skip
    assert fits[0][:2] == fits[1][:2]
    np.testing.assert_array_equal(fits[0][2], fits[1][2])


def test_lightgbm_threads_are_one_unless_asked(monkeypatch):
    """Never chosen from the machine or its load: the early-stopping metric's last bits depend on the count."""
    from training.model.estimator import THREADS_ENV, lgbm_threads

    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert lgbm_threads() == 1
    monkeypatch.setenv(THREADS_ENV, "4")
    assert lgbm_threads() == 4


def test_a_fit_states_the_rounds_early_stopping_let_it_run():
    X, y, t0, t1, weight = _panel(5, 2)
    model = _model(200)
    fitted = fit_with_early_stopping(X.to_numpy(), y, weight, t0, t1, model, features=list(X.columns))
    assert fitted.rounds == min(fitted.best_iteration + model.early_stopping_rounds, model.num_boost_round)
