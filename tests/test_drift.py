"""The drift judgement on the bundled data, replayed a session at a time (no service needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.drift_replay import replay
from training.model.input_distribution import input_distribution
from training.serving.drift import DriftReport, check_drift


def test_the_last_250_sessions_rarely_alarm_and_a_tenfold_volume_alarms_within_three_sessions():
    result = replay(shift_starts=(240, 10), rejected=False)
    assert result.sessions == 250
    assert result.false_alarm_rate <= 0.02, result.false_alarms
    assert all(delay is not None and delay <= 3 for delay in result.delays.values()), result.delays


def _reference(days: int = 400, symbols: int = 6, seed: int = 0) -> dict:
    """A market factor shared by all symbols each day plus each symbol's own noise."""
    rng = np.random.default_rng(seed)
    market = np.repeat(rng.normal(0, 1, days), symbols)
    values = market + rng.normal(0, 0.3, days * symbols)
    sessions = np.repeat(np.arange(days), symbols)
    return input_distribution([("x", values)], len(values), sessions)


def test_a_whole_market_moving_together_is_a_session_like_training_ones():
    """Two standard deviations of the market factor: every symbol far in the rows' tail, an ordinary session."""
    report = check_drift(_reference(), pd.DataFrame({"x": 2.0 + np.linspace(-0.3, 0.3, 6)}), 0.01)
    assert report.drifted == [] and 0.95 < report.inputs[0].quantile < 1.0, report.summary()


def test_a_session_beyond_every_training_session_drifts_and_survives_its_json_round_trip():
    report = check_drift(_reference(), pd.DataFrame({"x": 10.0 + np.linspace(-0.3, 0.3, 6)}), 0.01)
    assert [d.name for d in report.drifted] == ["x"] and report.inputs[0].p_value == 0.0
    assert "1 input(s) drifted" in report.summary()
    assert DriftReport.from_json(report.to_json()) == report
