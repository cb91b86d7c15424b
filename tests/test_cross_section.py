"""Cross-sectional evaluation on inputs small enough to compute by hand: IC and Rank IC per date, ICIR, the
top-k / bottom-k portfolio's weights, turnover and costs, and CPCV's out-of-sample scores averaged per row."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from training.model.cross_section import cross_section, oos_scores, score_of

DAY1, DAY2, DAY3 = (pd.Timestamp(f"2012-01-0{d} 21:00", tz="UTC") for d in (3, 4, 5))


def _rows(days, symbols, scores, rets, next_rets):
    return (pd.Series(symbols), pd.Series(days), np.array(scores, float), np.array(rets, float),
            np.array(next_rets, float))  # fmt: skip


def test_ic_rank_ic_and_icir_per_date():
    # Day 1: ret = 2 * score (IC 1, Rank IC 1). Day 2: ret falls with the score (IC -1 for a line, Rank IC -1).
    # Day 3: scores 1, 2, 3 against rets 0, 0.02, 0.01: Pearson 0.01 / (sqrt(2) sqrt(2e-4)) = 0.5, ranks (1, 3, 2):
    # Spearman 1 - 6 * 2 / (3 * 8) = 0.5.
    args = _rows([DAY1] * 3 + [DAY2] * 3 + [DAY3] * 3, list("ABC") * 3, [1, 2, 3, 1, 2, 3, 1, 2, 3],
                 [0.02, 0.04, 0.06, 0.03, 0.02, 0.01, 0.0, 0.02, 0.01], [0.0] * 9)  # fmt: skip
    result = cross_section(*args, top_k=1, cost_bps=0.0)
    assert result.daily["ic"].tolist() == pytest.approx([1.0, -1.0, 0.5])
    assert result.daily["rank_ic"].tolist() == pytest.approx([1.0, -1.0, 0.5])
    m = result.metrics()
    assert m["ic_mean"] == pytest.approx(0.5 / 3)
    assert m["icir"] == pytest.approx((0.5 / 3) / np.std([1.0, -1.0, 0.5], ddof=1))


def test_top_k_portfolio_turnover_and_costs():
    # Day 1: long C (best), short A (worst), 1/2 each: 0.5 * 0.04 - 0.5 * (-0.02) = 0.03, opening turnover 1.
    # Day 2: the ranks flip: long A, short C; turnover |0.5 - (-0.5)| * 2 = 2, and B never held.
    args = _rows([DAY1] * 3 + [DAY2] * 3, list("ABC") * 2, [1, 2, 3, 3, 2, 1], [0.0] * 6,
                 [-0.02, 0.01, 0.04, 0.01, 0.05, -0.03])  # fmt: skip
    result = cross_section(*args, top_k=1, cost_bps=10.0)
    assert result.daily["turnover"].tolist() == pytest.approx([1.0, 2.0])
    cost = 10.0 / 1e4
    assert result.daily["long_short"].tolist() == pytest.approx([0.03 - 1.0 * cost, 0.5 * 0.01 + 0.5 * 0.03 - 2 * cost])
    assert result.metrics()["topk_total_return"] == pytest.approx((1 + 0.03 - cost) * (1 + 0.02 - 2 * cost) - 1)
    assert result.metrics()["topk_turnover"] == pytest.approx(1.5)


def test_k_never_exceeds_half_a_dates_symbols_and_a_lone_symbol_has_no_ic():
    # top_k 5 on 4 symbols: k = 2, weights 1/4; a date with one symbol holds nothing and has no IC.
    args = _rows([DAY1] * 4 + [DAY2], [*"ABCD", "A"], [4, 3, 2, 1, 9], [0.0] * 5, [0.01, 0.02, 0.03, 0.04, 0.5])
    result = cross_section(*args, top_k=5, cost_bps=0.0)
    assert result.daily["long_short"].iloc[0] == pytest.approx(0.25 * (0.01 + 0.02) - 0.25 * (0.03 + 0.04))
    assert result.daily["long_short"].iloc[1] == 0.0
    assert math.isnan(result.daily["ic"].iloc[1]) and math.isnan(result.daily["ic"].iloc[0])  # ret constant


def test_oos_scores_average_the_folds_that_test_a_row():
    proba = lambda p: np.column_stack([1 - np.array(p), np.array(p)])  # noqa: E731
    folds = [SimpleNamespace(test_positions=np.array([0, 1]), proba=proba([0.2, 0.4])),
             SimpleNamespace(test_positions=np.array([1, 2]), proba=proba([0.6, 0.9]))]  # fmt: skip
    scores = oos_scores(folds, [0, 1], 4)
    assert scores[:3].tolist() == pytest.approx([0.2, 0.5, 0.9]) and math.isnan(scores[3])
    multiclass = np.array([[0.5, 0.2, 0.3]])  # classes -1, 0, +1: P(+1) - P(-1)
    assert score_of(multiclass, [-1, 0, 1]).tolist() == pytest.approx([-0.2])
