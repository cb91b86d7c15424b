"""The prediction log keeps every served value exactly, and serve's buffered log loses no row; `replay` refuses bad
dates. The replay of served rows after a correction is proven on the daily loop (tests/test_update.py)."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from training.serving.prediction_log import LOG_TABLE, BufferedLog, Logged, PredictionLog
from training.serving.served_replay import epochs, read_log, same

NOW = datetime(2026, 12, 7, 21, tzinfo=UTC)
BAR = datetime(2013, 3, 1, 21, tzinfo=UTC)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.none(),
    st.integers(-(2**53), 2**53),
    st.datetimes(datetime(1970, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC)),
)


def _row(features: dict, at: datetime = NOW, symbol: str = "IBM") -> Logged:
    return Logged(at, "test", symbol, BAR, "m", "1", "service", 0.5, features)


def _log(source: str = "test", kind: type[PredictionLog] = PredictionLog, **kwargs) -> PredictionLog:
    return kind(source, "models:/m/1", "service", ["x"], **kwargs)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8), values,
                       min_size=1, max_size=6))  # fmt: skip
def test_every_served_value_reads_back_from_the_log_as_itself(empty_store, features):
    """Doubles (subnormal, huge, NaN, ±inf), integers, missing values and timestamps survive jsonb exactly: the
    replay compares without a tolerance."""
    empty_store.execute(f"DROP TABLE IF EXISTS {LOG_TABLE}")
    _log().write([_row(features)])
    (back,) = read_log(empty_store, NOW, NOW + timedelta(seconds=1))
    assert back.features.keys() == features.keys()
    for name, value in features.items():
        assert same(back.features[name], value), (name, value, back.features[name])
        if isinstance(value, float) and math.isfinite(value):
            assert float(back.features[name]) == value


def test_a_changed_value_is_a_difference():
    assert not same(0.1, 0.1 + 2**-55) and not same(None, 0.0) and not same(1.0, None) and same(math.nan, None)
    assert not same("2013-03-01T21:00:00+00:00", datetime(2013, 3, 1, 21, 0, 1, tzinfo=UTC))
    assert same("2013-03-01T21:00:00+00:00", datetime(2013, 3, 1, 16, tzinfo=UTC) + timedelta(hours=5))


def test_serve_s_buffered_log_writes_every_row_by_shutdown_and_keeps_rows_a_failed_write_could_not(empty_store):
    """Rows recorded from many threads are all written by close(); a write that fails (PostgreSQL unreachable)
    keeps its rows for the next; a row recorded after close is written at once."""
    buffered = _log("serve", BufferedLog, interval=3600)  # no timed flush: only what the test does
    threads = [
        threading.Thread(
            target=lambda i=i: [buffered.record([_row({"x": float(j)}, symbol=f"S{i}")]) for j in range(50)]
        )
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGHOST", "127.0.0.1")  # nothing listens there: the flush fails and keeps the rows
        patch.setenv("PGPORT", "9")
        buffered.flush()
    assert _count(empty_store) is None
    buffered.close()
    assert _count(empty_store) == 400
    buffered.record([_row({"x": 1.0})])
    assert _count(empty_store) == 401


def _count(conn) -> int | None:
    if conn.execute("SELECT to_regclass(%s)", (LOG_TABLE,)).fetchone()[0] is None:
        return None
    return conn.execute(f"SELECT count(*) FROM {LOG_TABLE}").fetchone()[0]


def test_requests_between_the_same_knowledge_changes_share_one_epoch():
    t = [NOW + timedelta(seconds=s) for s in range(6)]
    assert epochs(t, [t[1], t[4]]) == [0, 1, 1, 1, 2, 2]
    assert epochs(t, []) == [0] * 6


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-13-01", "2026-12-31", "--from '2026-13-01' is not a date"),
        ("2026-12-01", "yesterday", "--to 'yesterday' is not a date"),
        ("2026-12-08", "2026-12-07", "--from 2026-12-08 is after --to 2026-12-07"),
    ],
)
def test_bad_dates_are_refused_in_one_line(start, end, message):
    result = run_cli("replay", "--from", start, "--to", end)
    assert result.exit_code == 2 and message in result.output, result.output


def test_an_empty_log_is_refused_in_one_line(empty_store):
    result = run_cli("replay", "--from", "2026-12-01", "--to", "2026-12-07")
    assert result.exit_code == 2, result.output
    assert "no prediction was logged from 2026-12-01 to 2026-12-07: it is empty" in result.output, result.output
