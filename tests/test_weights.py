"""Sample weights against a slow per-sample, per-bar reference; normalisation and switches."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.synthetic import bar_panel, panels
from training.errors import InputError
from training.labeling.sample_weights import label_windows, sample_weights, weight_components
from training.labeling.triple_barrier import triple_barrier_labels

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALL_ON = {"uniqueness": True, "return_attribution": True, "time_decay": 0.4, "class_balance": True}


def reference_components(labels: pd.DataFrame, bars: pd.DataFrame, weights: dict) -> dict[str, np.ndarray]:
    """Loop over samples and over the bars of each window; concurrency counted sample by sample."""
    by_symbol = {s: g.sort_values("event_timestamp").reset_index(drop=True) for s, g in bars.groupby("symbol")}
    windows = []  # (symbol, [bar timestamps in (t0, t1]])
    for row in labels.itertuples():
        g = by_symbol[row.symbol]
        windows.append(
            (row.symbol, list(g.event_timestamp[(g.event_timestamp > row.t0) & (g.event_timestamp <= row.t1)]))
        )
    concurrency: dict[tuple, int] = {}
    for symbol, stamps in windows:
        for t in stamps:
            concurrency[(symbol, t)] = concurrency.get((symbol, t), 0) + 1
    uniqueness, attribution = [], []
    for symbol, stamps in windows:
        g = by_symbol[symbol].set_index("event_timestamp")["close"]
        uniqueness.append(sum(1 / concurrency[(symbol, t)] for t in stamps) / len(stamps))
        total = 0.0
        for t in stamps:
            previous = g[g.index < t].iloc[-1]
            total += math.log(g[t] / previous) / concurrency[(symbol, t)]
        attribution.append(abs(total))
    out = {}
    if weights.get("uniqueness"):
        out["uniqueness"] = np.array(uniqueness)
    if weights.get("return_attribution"):
        out["return_attribution"] = np.array(attribution)
    c = weights.get("time_decay", 1.0)
    if c != 1.0:
        total = sum(uniqueness)
        decay = []
        for row in labels.itertuples():
            up_to = sum(u for u, t in zip(uniqueness, labels.t0, strict=True) if t <= row.t0)
            decay.append(c + (1 - c) * up_to / total)
        out["time_decay"] = np.array(decay)
    if weights.get("class_balance"):
        counts = labels.label.value_counts()
        out["class_balance"] = np.array([len(labels) / (len(counts) * counts[v]) for v in labels.label])
    return out


def _labels(bars: pd.DataFrame, horizon: int, drop_seed: int | None) -> pd.DataFrame:
    labels = triple_barrier_labels(bars, {"horizon": horizon, "profit_taking": 0.03, "stop_loss": 0.03})
    if drop_seed is not None and len(labels) > 2:  # e.g. warm-up rows removed by the dataset builder
        labels = labels.sample(frac=0.7, random_state=drop_seed).sort_index()
    return labels


@SETTINGS
@given(
    bars=panels(max_symbols=3, max_bars=25),
    horizon=st.integers(1, 5),
    drop_seed=st.none() | st.integers(0, 100),
    weights=st.fixed_dictionaries(
        {
            "uniqueness": st.booleans(),
            "return_attribution": st.booleans(),
            "time_decay": st.sampled_from([1.0, 0.5, 0.01]),
            "class_balance": st.booleans(),
        }
    ),
)
def test_matches_reference(bars: pd.DataFrame, horizon: int, drop_seed: int | None, weights: dict) -> None:
    labels = _labels(bars, horizon, drop_seed)
    if labels.empty:
        return
    expected = reference_components(labels, bars, weights)
    try:
        got = weight_components(labels, bars, weights)
    except InputError as exc:  # all-zero product, e.g. return attribution on flat prices
        assert "zero" in str(exc)
        assert np.prod(list(expected.values()), axis=0).sum() == pytest.approx(0, abs=1e-12)
        return
    assert set(got.columns) == {*expected, "weight"}
    for name, values in expected.items():
        np.testing.assert_allclose(got[name], values, rtol=1e-9, atol=1e-12, err_msg=name)
    product = np.prod(list(expected.values()), axis=0) if expected else np.ones(len(labels))
    np.testing.assert_allclose(got["weight"], product / product.mean(), rtol=1e-9, atol=1e-12)
    assert got["weight"].mean() == pytest.approx(1.0)
    assert (got["weight"] >= 0).all()


def test_isolated_samples_are_fully_unique() -> None:
    bars = bar_panel(4, 2, 30)
    labels = triple_barrier_labels(bars, {"horizon": 1})
    windows = label_windows(labels, bars)
    assert (windows.length == 1).all() and (windows.concurrency[windows.start] == 1).all()
    comps = weight_components(labels, bars, {"uniqueness": True})
    np.testing.assert_allclose(comps["uniqueness"], 1.0)


def test_overlap_halves_uniqueness() -> None:
    """Two samples sharing one of their two bars: uniqueness (1 + 1/2) / 2 each."""
    bars = bar_panel(5, 1, 4, flat_share=1.0)
    t = bars.event_timestamp
    labels = pd.DataFrame({"symbol": "S0", "t0": t.iloc[:2].to_list(), "t1": t.iloc[2:4].to_list(), "label": [1, -1]})
    np.testing.assert_allclose(weight_components(labels, bars, {"uniqueness": True})["uniqueness"], [0.75, 0.75])


def test_switches_and_normalisation() -> None:
    bars = bar_panel(6, 3, 60)
    labels = triple_barrier_labels(bars)
    off = {"uniqueness": False, "return_attribution": False, "time_decay": 1.0, "class_balance": False}
    np.testing.assert_allclose(sample_weights(labels, bars, off), 1.0)
    for name, on in (("uniqueness", True), ("return_attribution", True), ("time_decay", 0.3), ("class_balance", True)):
        comps = weight_components(labels, bars, {**off, name: on})
        assert list(comps.columns) == [name, "weight"]
        assert comps["weight"].std() > 0 and comps["weight"].mean() == pytest.approx(1.0)
    decay = weight_components(labels, bars, {**off, "time_decay": 0.3})
    oldest, newest = labels.t0 == labels.t0.min(), labels.t0 == labels.t0.max()
    assert decay["time_decay"][newest].eq(1.0).all() and decay["time_decay"][oldest].lt(0.32).all()
    balanced = weight_components(labels, bars, {**off, "class_balance": True})
    per_class = balanced.groupby(labels.label)["weight"].sum()
    np.testing.assert_allclose(per_class, per_class.iloc[0])
    binary = sample_weights(labels, bars, {**off, "class_balance": True}, classes=labels.label == 1)
    np.testing.assert_allclose(pd.Series(binary).groupby((labels.label == 1).to_numpy()).sum(), len(labels) / 2)


def test_all_weights_zero_is_an_error() -> None:
    bars = bar_panel(2, 1, 20, flat_share=1.0)
    labels = triple_barrier_labels(bars)
    with pytest.raises(InputError, match="zero"):
        sample_weights(labels, bars, {"return_attribution": True})


def test_samples_must_be_bars() -> None:
    bars = bar_panel(2, 1, 20)
    labels = triple_barrier_labels(bars)
    with pytest.raises(InputError, match="not a bar"):
        label_windows(labels.assign(t1=labels.t1 + pd.Timedelta(hours=1)), bars)
    with pytest.raises(InputError, match="no bars"):
        label_windows(labels.assign(symbol="ZZZ"), bars)
    with pytest.raises(InputError, match="unknown"):
        sample_weights(labels, bars, {"uniquenes": True})
