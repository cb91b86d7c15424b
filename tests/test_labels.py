"""Triple-barrier labels against a slow per-event reference, and the no-look-ahead properties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.synthetic import bar_panel, label_configs, panels
from training.errors import InputError
from training.labeling.triple_barrier import LabelParams, triple_barrier_labels

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference_sigma(close: list[float], i: int, span: int) -> float | None:
    """Bias-corrected EWM std (pandas ``ewm(span, adjust=True).std()``) of returns 1..i, written out."""
    returns = [close[j] / close[j - 1] - 1 for j in range(1, i + 1)]
    if len(returns) < span:
        return None
    alpha = 2 / (span + 1)
    w = [(1 - alpha) ** (len(returns) - 1 - j) for j in range(len(returns))]
    sw, sw2 = sum(w), sum(x * x for x in w)
    mean = sum(wj * r for wj, r in zip(w, returns, strict=True)) / sw
    biased = sum(wj * (r - mean) ** 2 for wj, r in zip(w, returns, strict=True)) / sw
    return math.sqrt(biased * sw * sw / (sw * sw - sw2))


def reference_labels(bars: pd.DataFrame, config: dict) -> pd.DataFrame:
    """One event at a time, one bar at a time: the obviously correct version."""
    p = LabelParams.from_config(config)
    rows = []
    for symbol, g in bars.groupby("symbol", sort=True):
        g = g.sort_values("event_timestamp")
        ts, close = list(g["event_timestamp"]), list(g["close"])
        high = close if p.touch == "close" else list(g["high"])
        low = close if p.touch == "close" else list(g["low"])
        for i in range(len(g)):
            if i + p.horizon > len(g) - 1:
                continue
            scale = 1.0
            if p.barriers == "volatility":
                sigma = reference_sigma(close, i, p.volatility_span)
                if sigma is None or not sigma > 0:
                    continue
                scale = sigma
            entry = close[i]
            upper, lower = entry * (1 + p.profit_taking * scale), entry * (1 - p.stop_loss * scale)
            label, barrier, end = None, "vertical", i + p.horizon
            for k in range(1, p.horizon + 1):
                if low[i + k] <= lower:
                    label, barrier, end = -1, "lower", i + k
                    break
                if high[i + k] >= upper:
                    label, barrier, end = 1, "upper", i + k
                    break
            ret = close[end] / entry - 1
            if label is None:
                label = 0 if p.vertical_label == "zero" else (ret > 0) - (ret < 0)
            rows.append((symbol, ts[i], ts[end], label, ret, barrier, upper, lower))
    return pd.DataFrame(rows, columns=["symbol", "t0", "t1", "label", "ret", "barrier", "upper", "lower"])


def assert_same(fast: pd.DataFrame, slow: pd.DataFrame) -> None:
    assert len(fast) == len(slow)
    if not len(slow):
        return
    for column in ("symbol", "t0", "t1", "label", "barrier"):
        assert fast[column].astype(object).tolist() == slow[column].astype(object).tolist(), column
    for column in ("ret", "upper", "lower"):
        np.testing.assert_allclose(fast[column], slow[column], rtol=1e-9, atol=1e-12, err_msg=column)


@SETTINGS
@given(bars=panels(), config=label_configs)
def test_matches_per_event_reference(bars: pd.DataFrame, config: dict) -> None:
    assert_same(triple_barrier_labels(bars, config), reference_labels(bars, config))


@SETTINGS
@given(bars=panels(), config=label_configs)
def test_structural_properties(bars: pd.DataFrame, config: dict) -> None:
    out = triple_barrier_labels(bars, config)
    assert (out["t1"] > out["t0"]).all()
    assert out["label"].dtype == np.int8
    assert set(out["label"].unique()) <= {-1, 0, 1}
    assert out["t1"].dtype == bars["event_timestamp"].dtype
    position = bars.sort_values("event_timestamp").groupby("symbol").cumcount()
    per_symbol = bars.assign(position=position).set_index(["symbol", "event_timestamp"])["position"]
    steps = (
        per_symbol.loc[list(zip(out.symbol, out.t1, strict=True))].to_numpy()
        - per_symbol.loc[list(zip(out.symbol, out.t0, strict=True))].to_numpy()
    )
    assert ((steps >= 1) & (steps <= config["horizon"])).all()  # bars, not calendar days
    lengths = bars.groupby("symbol").size()
    counts = out.groupby("symbol").size().reindex(lengths.index, fill_value=0)
    if config["barriers"] == "fixed":  # every bar with a full horizon, and no other, is a sample
        assert (counts == np.maximum(lengths - config["horizon"], 0)).all()
    else:
        assert (counts <= np.maximum(lengths - config["horizon"], 0)).all()


@SETTINGS
@given(bars=panels(max_symbols=2), config=label_configs, data=st.data())
def test_label_ignores_bars_outside_its_window(bars: pd.DataFrame, config: dict, data: st.DataObject) -> None:
    """Changing any bar after D+h (or, with fixed barriers, any bar before D) never changes D's label."""
    out = triple_barrier_labels(bars, config)
    if not len(out):
        return
    row = out.iloc[data.draw(st.integers(0, len(out) - 1))]
    same = bars["symbol"] == row.symbol
    ordered = bars[same].sort_values("event_timestamp")
    d = int(np.flatnonzero((ordered["event_timestamp"] == row.t0).to_numpy())[0])
    position = pd.Series(np.arange(len(ordered)), index=ordered.index).reindex(bars.index)
    after = same & (position > d + config["horizon"])
    before = same & (position < d) if config["barriers"] == "fixed" else same & False
    changed = bars.copy()
    factor = np.random.default_rng(d).uniform(0.5, 1.5, len(bars))
    for column in ("high", "low", "close"):
        changed.loc[after | before | ~same, column] *= factor[after | before | ~same]
    again = triple_barrier_labels(changed, config)
    match = again[(again.symbol == row.symbol) & (again.t0 == row.t0)]
    assert len(match) == 1
    assert_same(
        match.reset_index(drop=True), out[(out.symbol == row.symbol) & (out.t0 == row.t0)].reset_index(drop=True)
    )


def _bars(closes: list[float], highs: list[float] | None = None, lows: list[float] | None = None, gaps=None):
    n = len(closes)
    days = pd.Timestamp("2012-03-01 21:00", tz="UTC") + pd.to_timedelta(np.cumsum(gaps or [1] * n), "D")
    return pd.DataFrame(
        {"symbol": "X", "event_timestamp": days, "high": highs or closes, "low": lows or closes, "close": closes}
    )


def test_flat_prices_never_touch() -> None:
    for vertical in ("zero", "sign"):
        out = triple_barrier_labels(_bars([10.0] * 9), {"horizon": 3, "vertical_label": vertical})
        assert len(out) == 6
        assert (out.label == 0).all() and (out.ret == 0).all() and (out.barrier == "vertical").all()


def test_bar_touching_both_barriers_is_lower() -> None:
    out = triple_barrier_labels(_bars([100, 100, 100], highs=[100, 103, 100], lows=[100, 97, 100]), {"horizon": 1})
    assert out.loc[0, "label"] == -1 and out.loc[0, "barrier"] == "lower"
    assert out.loc[0, "t1"] == out.loc[1, "t0"]


def test_touch_mode_close_ignores_wicks() -> None:
    bars = _bars([100, 100.5, 101], highs=[100, 103, 101], lows=[100, 100, 101])
    assert triple_barrier_labels(bars, {"horizon": 2}).loc[0, "label"] == 1
    assert triple_barrier_labels(bars, {"horizon": 2, "touch": "close"}).loc[0, "label"] == 0


def test_vertical_sign_and_gaps_in_dates() -> None:
    """The horizon counts bars: a 30-day gap is still one bar; t1 is D+h's timestamp."""
    bars = _bars([100, 100.5, 101, 99.5], gaps=[1, 30, 1, 1])
    zero = triple_barrier_labels(bars, {"horizon": 2})
    sign = triple_barrier_labels(bars, {"horizon": 2, "vertical_label": "sign"})
    assert zero.label.tolist() == [0, 0] and sign.label.tolist() == [1, -1]
    assert zero.t1.tolist() == bars.event_timestamp.iloc[2:].tolist()
    np.testing.assert_allclose(zero.ret, [0.01, 99.5 / 100.5 - 1])


def test_volatility_mode_drops_undefined_sigma() -> None:
    bars = bar_panel(3, 1, 30)
    out = triple_barrier_labels(bars, {"barriers": "volatility", "volatility_span": 5, "horizon": 2})
    first = bars.sort_values("event_timestamp").event_timestamp.iloc[5]  # needs 5 returns: bars 1..5
    assert out.t0.min() >= first


def test_order_of_rows_does_not_matter() -> None:
    bars = bar_panel(7, 3, 25)
    expected = triple_barrier_labels(bars)
    shuffled = bars.sample(frac=1.0, random_state=2)
    pd.testing.assert_frame_equal(triple_barrier_labels(shuffled), expected)


def test_empty_and_short_input() -> None:
    out = triple_barrier_labels(_bars([10.0, 11.0]), {"horizon": 5})
    assert list(out.columns) == ["symbol", "t0", "t1", "label", "ret", "barrier", "upper", "lower"] and out.empty


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.drop(columns="low"), "low"),
        (lambda b: b.assign(close=b.close.where(b.index != 2, -1.0)), "non-positive"),
        (lambda b: b.assign(close=b.close.where(b.index != 2, np.nan)), "missing"),
        (lambda b: pd.concat([b, b.iloc[[3]]]), "duplicate"),
        (lambda b: b.assign(event_timestamp=b.event_timestamp.astype(str)), "datetime"),
    ],
)
def test_bad_input_is_named(change, message: str) -> None:
    with pytest.raises(InputError, match=message):
        triple_barrier_labels(change(bar_panel(1, 1, 10)))


def test_unknown_or_bad_parameters() -> None:
    with pytest.raises(InputError, match="unknown"):
        triple_barrier_labels(bar_panel(1, 1, 10), {"horizn": 3})
    with pytest.raises(InputError, match="touch"):
        triple_barrier_labels(bar_panel(1, 1, 10), {"touch": "open"})
