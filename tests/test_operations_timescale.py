"""Operating on TimescaleDB: the decision from catalog facts, and what the server at hand offers.

The decision functions are tested on every case a server can report. The integration tests read which mode the
server offers (plain PostgreSQL, TimescaleDB loaded, installed but not loaded, or created in the database but
not loaded) from the server itself and assert that mode's behaviour, so the same file passes on plain
PostgreSQL (the suite's default) and on a real TimescaleDB (`make test-timescale`, which also restarts it
without the preload).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from tests.conftest import BUNDLED_DATA, run_cli
from tests.hypertables import is_hypertable, relations, settle_compression, uncompressed
from training.errors import ServiceUnavailable
from training.indicators.backfill import compute_features
from training.indicators.feature_table import FEATURES_TABLE, ensure_features_table
from training.infra import db
from training.infra.db import NOT_OFFERED, TimescaleFacts, decide_timescaledb, timescale_facts
from training.infra.schema import (
    DEFAULT_CHUNK_DAYS,
    MAX_CHUNK_DAYS,
    MIN_CHUNK_DAYS,
    OHLCV_TABLE,
    WANTED_COMPRESSION,
    Compression,
    chunk_days,
    compression_to_apply,
    ensure_ohlcv_table,
    parse_orderby,
    read_compression,
)
from training.ingestion.bar_files import clean_bars
from training.ingestion.upsert import upsert_bars

LOADED = TimescaleFacts(offered=True, created=False, preloaded=True, may_create=True, role="ohlcv")


@pytest.mark.parametrize(
    ("facts", "use", "because"),
    [
        (TimescaleFacts(False, False, False, True, "ohlcv"), False, "does not offer"),
        (TimescaleFacts(False, False, None, False, "ohlcv"), False, "does not offer"),
        # installed but not preloaded: CREATE EXTENSION would end the connection with FATAL
        (TimescaleFacts(True, False, False, True, "ohlcv"), False, "not in shared_preload_libraries"),
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
    assert not decision.refused
    assert because in decision.reason
    assert "\n" not in decision.reason
    if not use:
        assert "plain tables" in decision.reason


@pytest.mark.parametrize("offered", [True, False])  # files removed after the extension was created: not offered
def test_an_extension_created_but_not_loaded_is_refused_naming_the_fix(offered):
    decision = decide_timescaledb(TimescaleFacts(offered, True, False, True, "ohlcv", "prices"))
    assert decision.refused and not decision.use
    assert "\n" not in decision.reason
    assert "database prices" in decision.reason
    assert "shared_preload_libraries = 'timescaledb'" in decision.reason and "restart" in decision.reason


@pytest.mark.parametrize(
    ("bars", "symbol_days", "span_days", "days"),
    [
        (12_154, 17_650, 4_750, 1_452),  # the bundled data: 5 symbols over 13 years: 1,000 bars a symbol
        (5_000 * 2_520, 5_000 * 3_650, 3_650, 579),  # 5,000 symbols: capped at 2 M rows a chunk
        (100_000 * 252, 100_000 * 365, 365, 29),
        (1_000_000 * 252, 1_000_000 * 365, 365, MIN_CHUNK_DAYS),  # never below a week
        (10, 3_650, 3_650, MAX_CHUNK_DAYS),  # sparse: never above ten years
        (0, 0, 0, DEFAULT_CHUNK_DAYS),  # nothing to measure
    ],
)
def test_the_chunk_interval_follows_the_datas_density(bars, symbol_days, span_days, days):
    assert chunk_days(bars, symbol_days, span_days) == days


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


# --- the mode the server offers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """What the server says of TimescaleDB, read without the project's code (the tests run as a superuser)."""

    offered: bool
    preloaded: bool
    created: bool

    @classmethod
    def read(cls, conn: psycopg.Connection) -> Server:
        libraries = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        return cls(
            conn.execute("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')").fetchone()[
                0
            ],
            "timescaledb" in [name.strip().strip('"') for name in libraries.split(",")],
            conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()[0],
        )

    @property
    def refuses(self) -> bool:  # created in the database, but the server runs without its library
        return self.created and not self.preloaded

    @property
    def hypertables(self) -> bool:
        return self.offered and self.preloaded


def test_the_server_is_read_as_it_is(empty_store):
    server, facts = Server.read(empty_store), timescale_facts(empty_store)
    assert (facts.offered, facts.created, facts.preloaded) == (server.offered, server.created, server.preloaded)
    decision = decide_timescaledb(facts)
    assert (decision.use, decision.refused) == (server.hypertables, server.refuses)
    if not server.offered:
        assert decision.reason == NOT_OFFERED


def _one_line(result, code: int, *needles: str) -> None:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == code and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_tables_follow_the_mode_the_server_offers(empty_store, caplog, tmp_path):
    from training.serving.prediction_log import LOG_TABLE, ensure_log_table

    server = Server.read(empty_store)
    db._told.clear()
    if server.refuses:
        with pytest.raises(ServiceUnavailable, match="shared_preload_libraries = 'timescaledb'"):
            db.connect()
        out = str(tmp_path / "dataset")
        for args in (("ingest", str(BUNDLED_DATA)), ("compute-features",), ("build-dataset", "--out", out)):
            _one_line(run_cli(*args), 3, "shared_preload_libraries = 'timescaledb'", "restart PostgreSQL")
        assert empty_store.execute("SELECT to_regclass(%s)", (OHLCV_TABLE,)).fetchone()[0] is None
        return
    with caplog.at_level(logging.DEBUG, logger="training.infra.db"):
        ensure_ohlcv_table(empty_store)
        ensure_features_table(empty_store)
        ensure_log_table(empty_store)
        ensure_log_table(empty_store)  # idempotent
    lines = [r.getMessage() for r in caplog.records if r.name == "training.infra.db"]
    assert len(set(lines)) == len(lines) >= 1  # a line says which mode, not one a table
    for table in (OHLCV_TABLE, FEATURES_TABLE, LOG_TABLE):
        assert is_hypertable(empty_store, table) is server.hypertables
    if not server.offered:
        assert lines == [f"TimescaleDB: {NOT_OFFERED}"]
        assert not server.created
    elif not server.preloaded:
        assert len(lines) == 1 and "not in shared_preload_libraries" in lines[0] and "plain tables" in lines[0]
    else:
        assert all(line.endswith(": hypertables") for line in lines), lines
        for table in (OHLCV_TABLE, FEATURES_TABLE):
            assert read_compression(empty_store, table) == WANTED_COMPRESSION
            assert _policies(empty_store, table) == 1
            assert _chunk_days(empty_store, table) == DEFAULT_CHUNK_DAYS  # nothing to measure yet


def _policies(conn: psycopg.Connection, table: str) -> int:
    schema, name = table.split(".")
    return conn.execute(
        "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' "
        "AND hypertable_schema = %s AND hypertable_name = %s",
        (schema, name),
    ).fetchone()[0]


def _chunk_days(conn: psycopg.Connection, table: str) -> int:
    schema, name = table.split(".")
    return conn.execute(
        "SELECT extract(day FROM time_interval)::int FROM timescaledb_information.dimensions "
        "WHERE hypertable_schema = %s AND hypertable_name = %s",
        (schema, name),
    ).fetchone()[0]


def _size(conn: psycopg.Connection, table: str) -> int:
    """Bytes on disk of the table with its indexes and TOAST: on a hypertable, of every chunk and compressed chunk."""
    return conn.execute(
        "SELECT sum(pg_total_relation_size(r::regclass))::bigint FROM unnest(%s::text[]) r",
        ([name for name, _ in relations(conn, table)],),
    ).fetchone()[0]


def test_the_bundled_data_gets_chunks_sized_to_it_and_compresses(empty_store):
    """On TimescaleDB: chunks measured from the first file, every table smaller compressed than plain, the policy
    added once and never again by routine runs. On plain PostgreSQL: the same commands, plain tables."""
    server = Server.read(empty_store)
    if server.refuses:
        return  # refused in one line: test_tables_follow_the_mode_the_server_offers
    for args in (("ingest", str(BUNDLED_DATA)), ("compute-features",)):
        result = run_cli(*args)
        assert result.exit_code == 0, result.output
    if not server.hypertables:
        assert not is_hypertable(empty_store, OHLCV_TABLE) and not is_hypertable(empty_store, FEATURES_TABLE)
        return
    notices: list[str] = []
    empty_store.add_notice_handler(lambda notice: notices.append(notice.message_primary or ""))
    for table in (OHLCV_TABLE, FEATURES_TABLE):
        assert _chunk_days(empty_store, table) == 1_452  # 1,000 bars of each symbol a chunk
        settle_compression(empty_store, table)
        compressed = _size(empty_store, table)
        copy = f"plain_{table.split('.')[1]}"
        empty_store.execute(f"CREATE TEMP TABLE {copy} (LIKE {table} INCLUDING ALL)")
        empty_store.execute(f"INSERT INTO {copy} SELECT * FROM {table}")
        plain = _size(empty_store, f"pg_temp.{copy}")
        chunks = empty_store.execute(
            "SELECT count(*), count(*) FILTER (WHERE is_compressed) FROM timescaledb_information.chunks "
            "WHERE format('%%I.%%I', hypertable_schema, hypertable_name) = %s",
            (table,),
        ).fetchone()
        assert chunks[0] == chunks[1] == 4, chunks  # every chunk of the bundled data is older than 730 days
        print(f"{table}: {compressed:,} bytes compressed, {plain:,} bytes as a plain table")
        assert compressed < plain, (table, compressed, plain)
    ensure_ohlcv_table(empty_store)
    ensure_features_table(empty_store)
    assert (_policies(empty_store, OHLCV_TABLE), _policies(empty_store, FEATURES_TABLE)) == (1, 1)
    assert not [n for n in notices if "policy" in n], notices  # add_compression_policy was not called again


# --- a write that meets a lock cycle (TimescaleDB's compression policy, played by another session) ---------


def _meet_a_lock_cycle(conn: psycopg.Connection, table: str, write: Callable[[], object]) -> object:
    """Run ``write`` in a thread while another session does what the compression policy does to a chunk: hold
    locks the write must wait for (here AAPL's rows), then ask for ACCESS EXCLUSIVE (to truncate the chunk), which
    waits for the locks the write took. The write waits first, so the deadlock detector cancels it; the other
    session goes on as soon as the write's attempt is rolled back. Returns the write's result, or its error."""
    uncompressed(conn, table)
    holder = db.connect()
    holder.execute("SET deadlock_timeout = '30s'")  # the writer detects the cycle, never the holder
    holder.execute(f"SELECT 1 FROM {table} WHERE symbol = 'AAPL' FOR UPDATE")
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(write())
        except BaseException as exc:  # surfaced by the caller
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE NOT l.granted "
            "AND l.locktype = 'transactionid' AND a.datname = current_database() AND l.pid <> %s)",
            (holder.info.backend_pid,),
        ).fetchone()[0]:
            assert worker.is_alive() and time.monotonic() < deadline, outcome
            time.sleep(0.05)
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # granted once the write rolled back
        time.sleep(0.2)
        holder.commit()
    finally:
        holder.close()
        worker.join(timeout=120)
    return outcome[0]


def _bars(raw, rows: int, volume: str | None = None):
    aapl = raw[raw["Ticker"] == "AAPL"].head(rows)
    return clean_bars(aapl if volume is None else aapl.assign(Volume=volume)).bars


def test_an_ingest_in_a_lock_cycle_is_rerun_and_writes_once(empty_store, bundled_raw, caplog):
    upsert_bars(_bars(bundled_raw, 40))
    with caplog.at_level(logging.WARNING, logger="training.infra.db"):
        write = lambda: upsert_bars(_bars(bundled_raw, 40, volume="1234"))  # noqa: E731
        result = _meet_a_lock_cycle(empty_store, OHLCV_TABLE, write)
    assert not isinstance(result, BaseException), result
    assert (result.inserted, result.updated) == (0, 40)
    assert any("ingest: deadlock detected; attempt 2 of" in r.getMessage() for r in caplog.records), caplog.text
    stored = empty_store.execute(f"SELECT count(*), count(*) FILTER (WHERE volume = 1234) FROM {OHLCV_TABLE}")
    assert stored.fetchone() == (40, 40)


def test_compute_features_in_a_lock_cycle_is_rerun_whole(empty_store, bundled_raw, caplog):
    upsert_bars(_bars(bundled_raw, 60))
    compute_features()
    upsert_bars(_bars(bundled_raw, 60, volume="1234"))
    with caplog.at_level(logging.WARNING, logger="training.infra.db"):
        result = _meet_a_lock_cycle(empty_store, FEATURES_TABLE, compute_features)
    assert not isinstance(result, BaseException), result
    assert (result.inserted, result.updated) == (0, 60)
    assert any("compute-features: deadlock detected; attempt 2 of" in r.getMessage() for r in caplog.records)
    assert empty_store.execute(f"SELECT count(*) FROM {FEATURES_TABLE}").fetchone()[0] == 60


def test_a_lock_cycle_on_every_attempt_ends_in_one_line_and_writes_nothing(
    empty_store, bundled_raw, write_csv, monkeypatch
):
    upsert_bars(_bars(bundled_raw, 40))
    before = empty_store.execute(f"SELECT md5(string_agg(t::text, ',' ORDER BY event_timestamp)) FROM {OHLCV_TABLE} t")
    before = before.fetchone()[0]
    monkeypatch.setattr(db, "LOCK_ATTEMPTS", 1)
    corrected = bundled_raw[bundled_raw["Ticker"] == "AAPL"].head(40).assign(Volume="1234")
    result = _meet_a_lock_cycle(empty_store, OHLCV_TABLE, lambda: run_cli("ingest", str(write_csv(corrected))))
    _one_line(result, 3, "ingest met a lock held by another session", "deadlock detected", "retry is safe")
    after = empty_store.execute(f"SELECT md5(string_agg(t::text, ',' ORDER BY event_timestamp)) FROM {OHLCV_TABLE} t")
    assert after.fetchone()[0] == before


def test_a_correction_decompressing_more_than_the_servers_cap_lands(empty_store, bundled_raw, write_csv):
    """TimescaleDB caps the tuples a transaction may decompress (100,000 by default; 50 here, so the bundled data
    can cross it): a correction of bars in compressed chunks, and the recomputed features of every later bar, must
    still land whole. On plain PostgreSQL the same commands simply write."""
    server = Server.read(empty_store)
    if server.refuses:
        return
    for args in (("ingest", str(BUNDLED_DATA)), ("compute-features",)):
        result = run_cli(*args)
        assert result.exit_code == 0, result.output
    if server.hypertables:
        for table in (OHLCV_TABLE, FEATURES_TABLE):
            settle_compression(empty_store, table)
        database = empty_store.execute("SELECT current_database()").fetchone()[0]
        empty_store.execute(
            sql.SQL("ALTER DATABASE {} SET timescaledb.max_tuples_decompressed_per_dml_transaction = 50").format(
                sql.Identifier(database)
            )
        )
    ibm = bundled_raw[bundled_raw["Ticker"] == "IBM"].iloc[::50].copy()  # a bar every 50 sessions, in every chunk
    midpoint = (ibm["Low"].astype(float) + ibm["High"].astype(float)) / 2
    ibm = ibm[midpoint != ibm["Close"].astype(float)].assign(Close=midpoint.map(repr))  # vendor corrections
    result = run_cli("ingest", str(write_csv(ibm, "ibm.csv")))
    assert result.exit_code == 0, result.output
    assert f"{len(ibm)} updated" in result.output, result.output
    result = run_cli("compute-features")
    assert result.exit_code == 0, result.output
    assert "updated" in result.output and ", 0 updated" not in result.output, result.output
