"""Bet sizing (AFML 10.1-10.3) against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.model.bet_sizing import average_active, discretise, size_from_probability


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_size_from_probability_by_hand():
    # p = 0.6: z = 0.1 / sqrt(0.24) = 0.204124..., 2 Phi(z) - 1 = 0.161744...
    z = 0.1 / math.sqrt(0.24)
    assert size_from_probability(np.array([0.6]), np.array([1]))[0] == pytest.approx(2 * _phi(z) - 1, abs=1e-12)
    assert 2 * _phi(z) - 1 == pytest.approx(0.161744, abs=1e-6)
    # p = 0.9 on a short: z = 0.4 / 0.3, size = -(2 Phi(4/3) - 1) = -0.817578...
    assert size_from_probability(np.array([0.9]), np.array([-1]))[0] == pytest.approx(-0.817578, abs=1e-6)
    # no edge or a predicted "pass" (p <= 1/2): no bet
    assert list(size_from_probability(np.array([0.5, 0.3]), np.array([1, -1]))) == [0.0, 0.0]
    # three classes: p = 0.5 gives z = (0.5 - 1/3) / 0.5 = 1/3
    assert size_from_probability(np.array([0.5]), np.array([1]), n_classes=3)[0] == pytest.approx(
        2 * _phi(1 / 3) - 1, abs=1e-12
    )


def test_average_active_by_hand():
    # One symbol, bets at bars 0, 1, 2, 5 with ends 3, 2, 6, 7 and sizes 0.8, 0.2, -0.4, 0.6.
    # Bar 0: {0.8}; bar 1: {0.8, 0.2} = 0.5; bar 2: bet 1 closed at 2 -> {0.8, -0.4} = 0.2; bar 5: {-0.4, 0.6} = 0.1.
    t0, t1 = np.array([0, 1, 2, 5]), np.array([3, 2, 6, 7])
    got = average_active(np.array(["A"] * 4), t0, t1, np.array([0.8, 0.2, -0.4, 0.6]))
    np.testing.assert_allclose(got, [0.8, 0.5, 0.2, 0.1])
    # Another symbol's bets never enter the average.
    got = average_active(np.array(["A", "B"]), np.array([0, 0]), np.array([5, 5]), np.array([1.0, -1.0]))
    np.testing.assert_allclose(got, [1.0, -1.0])


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 6), st.floats(-1, 1)), min_size=1, max_size=30))
def test_average_active_equals_the_definition(bets):
    """Against AFML 10.2's loop: the mean over bets with t0_j <= t < t1_j, at every bet's own t0."""
    t0 = np.array([b[0] for b in bets])
    t1 = t0 + np.array([b[1] for b in bets])
    size = np.array([b[2] for b in bets])
    got = average_active(np.zeros(len(bets)), t0, t1, size)
    for i, t in enumerate(t0):
        active = (t0 <= t) & (t < t1)
        assert got[i] == pytest.approx(size[active].mean(), abs=1e-9)


def test_discretise_by_hand():
    np.testing.assert_allclose(discretise(np.array([0.161744, -0.817578, 0.05, 0.96]), 0.1), [0.2, -0.8, 0.0, 1.0])
    np.testing.assert_allclose(discretise(np.array([0.3, -0.6]), 0.25), [0.25, -0.5])
    with pytest.raises(ValueError, match="step"):
        discretise(np.array([0.1]), 0.0)
