"""Serving's parts that need no store: the refusal of a row whose views disagree on the bar or on its version,
the bounded request queue, and a store call's deadline and its handling of a store found silent.

Pure tests (no PostgreSQL, no Redis): rows are built here as Feast would return them, stores are functions.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.indicators.definitions import FAMILIES
from training.serving.scorer import MixedBars, MixedVersions, check_views_agree, describe_version

BAR = datetime(2013, 3, 4, 21, tzinfo=UTC)
VERSION = 1_700_000_000_123_456  # microseconds since the epoch

values = st.one_of(st.none(), st.integers(min_value=0, max_value=2**62))


@given(st.fixed_dictionaries({family: values for family in FAMILIES}))
def test_a_row_is_refused_exactly_when_its_views_disagree_on_the_version(versions):
    bars = dict.fromkeys(FAMILIES, BAR)
    if len(set(versions.values())) == 1:
        check_views_agree("AAPL", bars, versions)
        return
    with pytest.raises(MixedVersions) as refused:
        check_views_agree("AAPL", bars, versions)
    message = str(refused.value)
    assert "online features of AAPL mix versions of the bar of 2013-03-04" in message and "\n" not in message
    assert all(family in message for family in FAMILIES) and "materialize" in message


def test_two_versions_of_the_same_bar_one_microsecond_apart_are_refused():
    """The correction scenario: every view on the same bar, one view's row written a microsecond later."""
    versions = dict.fromkeys(FAMILIES, VERSION) | {"trend": VERSION + 1}
    with pytest.raises(MixedVersions, match=r"trend: 2023-11-14T22:13:20\.123457\+00:00"):
        check_views_agree("IBM", dict.fromkeys(FAMILIES, BAR), versions)


def test_different_bars_are_refused_as_before_whatever_the_versions():
    bars = dict.fromkeys(FAMILIES, BAR) | {"momentum": BAR + timedelta(days=1)}
    with pytest.raises(MixedBars, match="mix bars across feature views"):
        check_views_agree("IBM", bars, dict.fromkeys(FAMILIES, VERSION))


def test_a_version_reads_as_the_time_its_row_was_computed():
    assert describe_version(None) == "nothing"
    assert describe_version(0) == "1970-01-01T00:00:00+00:00"


# --- the bounded queue -------------------------------------------------------------------------------


def test_a_request_beyond_the_workers_and_the_queue_is_refused_busy_at_once():
    from training.serving.admission import Admission, Busy

    admission, release = Admission(workers=1, queue=1), threading.Event()
    running = admission.submit(release.wait)
    waiting = admission.submit(lambda: "waited")
    with pytest.raises(Busy, match=r"busy: 1 request\(s\) running and 1 waiting") as refused:
        admission.submit(lambda: "never run")
    assert refused.value.exit_code == 3 and refused.value.service == "serve"
    release.set()
    assert running.result() is True and waiting.result() == "waited"
    admission.shutdown()
    assert admission.admitted == 0  # both released: the queue takes requests again


def test_a_waiting_request_cancelled_before_it_runs_frees_its_place():
    from training.serving.admission import Admission

    admission, release = Admission(workers=1, queue=1), threading.Event()
    running = admission.submit(release.wait)
    waiting = admission.submit(lambda: "never run")
    assert waiting.cancel() and admission.admitted == 1
    release.set()
    running.result()
    admission.shutdown()


# --- a store found silent ----------------------------------------------------------------------------


def silent() -> None:
    import redis

    raise redis.TimeoutError("Timeout reading from socket")


def test_a_timeout_of_a_self_bounded_client_is_named_as_the_store_not_answering():
    from training.serving.bounded import ServiceTimeout, Store

    store = Store("Redis", "Redis at 127.0.0.1:1/0", "REDIS_URL", 2, self_bounded=True)
    with pytest.raises(ServiceTimeout, match=r"Redis at 127.0.0.1:1/0 did not answer within 2 s \(check REDIS_URL"):
        store.call(silent)


def test_a_store_found_silent_fails_calls_at_once_until_its_background_probe_gets_an_answer():
    """After a timeout, calls fail at once without calling the store, while a background thread retries the
    probe; the first answer makes the store trusted again."""
    from training.serving.bounded import ServiceTimeout, Store

    back, probed = threading.Event(), threading.Event()

    def probe() -> None:
        probed.set()
        if not back.is_set():
            silent()

    store = Store("Redis", "Redis at 127.0.0.1:1/0", "REDIS_URL", 0.01, self_bounded=True, probe=probe)
    with pytest.raises(ServiceTimeout):
        store.call(silent)
    assert store.suspect
    calls = []
    with pytest.raises(ServiceTimeout, match="is tried again in the background") as refused:
        store.call(lambda: calls.append("must not run"))
    assert "Redis at 127.0.0.1:1/0 did not answer within 0.01 s (check REDIS_URL" in str(refused.value)
    assert calls == [] and probed.wait(10)
    back.set()
    for _ in range(1000):  # the probe's next try answers; bounded, never a hang
        if not store.suspect:
            break
        threading.Event().wait(0.01)
    assert not store.suspect and store.call(lambda: "answered") == "answered"


def test_a_readiness_probe_tries_a_suspect_store_and_its_answer_trusts_it_again():
    from training.serving.bounded import ServiceTimeout, Store

    hung = threading.Event()  # the background probe hangs: only /ready's own try can see the store back
    store = Store("Redis", "Redis at 127.0.0.1:1/0", "REDIS_URL", 0.01, self_bounded=True, probe=hung.wait)
    with pytest.raises(ServiceTimeout):
        store.call(silent)
    with pytest.raises(ServiceTimeout):
        store.refuse_if_suspect()
    assert store.call(lambda: "ready", probe=True) == "ready"
    assert not store.suspect and store.call(lambda: "answered") == "answered"
    hung.set()


def test_without_a_probe_every_call_tries_the_store_itself():
    from training.serving.bounded import ServiceTimeout, Store

    store, calls = Store("Redis", "Redis at 127.0.0.1:1/0", "REDIS_URL", 2, self_bounded=True), []
    with pytest.raises(ServiceTimeout):
        store.call(silent)
    assert not store.suspect and store.call(lambda: calls.append(1)) is None and calls == [1]


def test_a_call_on_its_own_thread_times_out_at_the_deadline_and_others_are_not_serialised_behind_it():
    """A store without its own socket timeouts: the call runs on a thread the caller waits for; a hung call
    holds no lock, so a probe of the same store still gets its answer."""
    from training.serving.bounded import ServiceTimeout, Store

    store, hung = Store("PostgreSQL", "PostgreSQL at 127.0.0.1:1", "PGHOST", 0.05), threading.Event()
    with pytest.raises(ServiceTimeout, match=r"did not answer within 0\.05 s"):
        store.call(hung.wait)
    assert store.call(lambda: 1, probe=True) == 1
    hung.set()


def test_redis_py_given_retry_none_never_retries_a_timed_out_read():
    """Serving passes retry=null through Feast: redis-py's default would retry a silent read three times."""
    import redis

    assert redis.Redis(host="127.0.0.1", port=1).connection_pool.make_connection().retry.get_retries() == 3
    client = redis.Redis(host="127.0.0.1", port=1, socket_timeout=2.0, retry=None)
    assert client.connection_pool.make_connection().retry.get_retries() == 0


def test_a_started_call_runs_while_its_caller_waits_on_another_store():
    """``start``: the call is under way before its result is asked for (the universe's PostgreSQL query runs
    while Redis is read); its outcome is the call's own, and a store found silent is suspect after it."""
    from training.serving.bounded import ServiceTimeout, Store

    store = Store("PostgreSQL", "PostgreSQL at 127.0.0.1:1", "PGHOST", 60)
    began, release = threading.Event(), threading.Event()

    def session() -> str:
        began.set()
        release.wait()
        return "session"

    result = store.start(session)
    assert began.wait(30)  # running before anyone waits for it
    release.set()
    assert result() == "session"
    with pytest.raises(ZeroDivisionError):  # the store answered; the call itself failed
        store.start(lambda: 1 / 0)()
    hung: list[str] = []
    quick = Store("PostgreSQL", "PostgreSQL at 127.0.0.1:1", "PGHOST", 0.05, probe=threading.Event().wait)
    with pytest.raises(ServiceTimeout, match=r"did not answer within 0\.05 s"):
        quick.start(threading.Event().wait)()
    assert quick.suspect
    with pytest.raises(ServiceTimeout, match="tried again in the background"):
        quick.start(lambda: hung.append("must not run"))
    assert hung == []
