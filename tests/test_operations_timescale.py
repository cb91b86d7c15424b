"""Operating on TimescaleDB (issue 18, items 2 and 4), decided from catalog facts and tested on plain PostgreSQL.

The TimescaleDB extension cannot be installed on the test machines, so what a real server reports becomes the
input of the functions that decide: whether hypertables are used (the extension must be loaded, not merely
installed, and the role must be allowed to create it) and whether compression settings must be re-applied.
"""

from __future__ import annotations

import logging

import pytest

from training.indicators.feature_table import ensure_features_table
from training.infra import db
from training.infra.db import NOT_OFFERED, TimescaleFacts, decide_timescaledb, timescale_facts
from training.infra.schema import (
    WANTED_COMPRESSION,
    Compression,
    compression_to_apply,
    ensure_ohlcv_table,
    parse_orderby,
)

LOADED = TimescaleFacts(offered=True, created=False, preloaded=True, may_create=True, role="ohlcv")


@pytest.mark.parametrize(
    ("facts", "use", "because"),
    [
        (TimescaleFacts(False, False, False, True, "ohlcv"), False, "does not offer"),
        (TimescaleFacts(False, False, None, False, "ohlcv"), False, "does not offer"),
        # installed but not preloaded: CREATE EXTENSION would end the connection with FATAL
        (TimescaleFacts(True, False, False, True, "ohlcv"), False, "not in shared_preload_libraries"),
        (TimescaleFacts(True, True, False, True, "ohlcv"), False, "not in shared_preload_libraries"),
        # loaded, but this role may not create it
        (TimescaleFacts(True, False, True, False, "ohlcv"), False, "role ohlcv may not create"),
        # cannot tell whether it is loaded (shared_preload_libraries hidden from the role), not created yet
        (TimescaleFacts(True, False, None, True, "ohlcv"), False, "cannot see shared_preload_libraries"),
        # created already (an administrator did it): used, even when the role could not create it
        (TimescaleFacts(True, True, None, False, "ohlcv"), True, "created in this database"),
        (TimescaleFacts(True, True, True, False, "ohlcv"), True, "created in this database"),
        (LOADED, True, "may be created"),
    ],
)
def test_hypertables_only_when_timescaledb_is_loaded_and_usable(facts, use, because):
    decision = decide_timescaledb(facts)
    assert decision.use is use
    assert because in decision.reason
    assert "\n" not in decision.reason
    if not use:
        assert "plain tables" in decision.reason


def test_plain_postgresql_is_read_as_not_offering_timescaledb(conn):
    facts = timescale_facts(conn)
    assert (facts.offered, facts.created) == (False, False)  # the CI server: plain PostgreSQL 15
    assert facts.preloaded is False  # superuser: shared_preload_libraries is visible, without timescaledb
    assert decide_timescaledb(facts).reason == NOT_OFFERED


def test_tables_are_created_on_plain_postgresql_with_one_log_line_at_most(empty_store, caplog):
    db._told.clear()
    with caplog.at_level(logging.DEBUG, logger="training.infra.db"):
        ensure_ohlcv_table(empty_store)
        ensure_features_table(empty_store)
        ensure_ohlcv_table(empty_store)
    lines = [r.getMessage() for r in caplog.records if r.name == "training.infra.db"]
    assert lines == [f"TimescaleDB: {NOT_OFFERED}"]
    assert empty_store.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("current", "apply"),
    [
        (WANTED_COMPRESSION, False),  # a routine ingest: nothing re-applied (fails before 2.14 on compressed chunks)
        (Compression(True, ("symbol",), ("event_timestamp",)), False),
        (Compression(False), True),  # a new hypertable
        (Compression(True, (), ("event_timestamp",)), True),
        (Compression(True, ("symbol",), ("event_timestamp DESC",)), True),
        (Compression(True, ("symbol", "trade_date"), ("event_timestamp",)), True),
    ],
)
def test_compression_settings_are_applied_only_when_they_differ(current, apply):
    assert compression_to_apply(current) is apply


def test_orderby_text_of_timescaledb_2_14_is_read_without_its_defaults():
    assert parse_orderby("event_timestamp") == ("event_timestamp",)
    assert parse_orderby('"event_timestamp" ASC NULLS LAST') == ("event_timestamp",)
    assert parse_orderby("event_timestamp DESC NULLS FIRST, symbol") == ("event_timestamp DESC", "symbol")
    assert parse_orderby(None) == ()
