"""``serving.prediction_log``: every row ``predict``, ``serve`` and ``update`` scored, with the feature values
it was scored on, so ``replay`` can prove training would have joined the same values (see docs/known-at.md).

Feast's feature-service logging (``FeatureService(logging_config=...)``, ``write_logged_features``) cannot be
the log: Feast 0.67's PostgreSQL offline store (ours subclasses it) has no ``LoggingDestination`` and leaves
``write_logged_features`` unimplemented, only Feast's own feature server logs, and its log has no column for the
model or the probability. So the log is a table of ours in the offline store's PostgreSQL (the embedded
profile's pgserver included), a hypertable on TimescaleDB. Rows are written in batches, one INSERT from arrays:
``predict`` and ``update`` write theirs at once, ``serve`` through :class:`BufferedLog`, off the request path.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from training.contract import AUDIT_FEATURE

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

LOG_TABLE = "serving.prediction_log"
LOG_DDL = f"""
CREATE SCHEMA IF NOT EXISTS serving;
CREATE TABLE IF NOT EXISTS {LOG_TABLE} (
    request_time    timestamptz      NOT NULL,  -- when the row was scored (the scoring process's clock, UTC)
    source          text             NOT NULL,  -- predict, serve or update
    symbol          text             NOT NULL,
    bar_timestamp   timestamptz      NOT NULL,  -- the online row's own bar (its event timestamp)
    model_name      text             NOT NULL,
    model_version   text             NOT NULL,  -- '' for a model URI that is not models:/name/version
    feature_service text             NOT NULL,
    probability     double precision NOT NULL,  -- as predict reports it
    features        jsonb            NOT NULL   -- every feature of the service as served: see encode_value
);
CREATE INDEX IF NOT EXISTS prediction_log_request_time ON {LOG_TABLE} (request_time);
"""
CHUNK_DAYS = 7
# A log write waits at most this long for PostgreSQL (serve's writer thread never hangs on a silent server).
STATEMENT_TIMEOUT = "30s"
_INSERT = f"""
INSERT INTO {LOG_TABLE} (request_time, source, symbol, bar_timestamp, model_name, model_version, feature_service,
                         probability, features)
SELECT request_time, source, symbol, bar_timestamp, model_name, model_version, feature_service, probability,
       features::jsonb
FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[],
            %s::float8[], %s::text[])
     AS t(request_time, source, symbol, bar_timestamp, model_name, model_version, feature_service, probability,
          features)
"""
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


@dataclass(frozen=True)
class Logged:
    """One scored row as the log keeps it."""

    request_time: datetime
    source: str
    symbol: str
    bar_timestamp: datetime
    model_name: str
    model_version: str
    feature_service: str
    probability: float
    features: dict[str, Any]


def encode_value(value: Any) -> Any:
    """A served value as JSON keeps it exactly: floats by their shortest repr (jsonb stores the decimal, which
    reads back as the same double), NaN/±inf by name (JSON has no such numbers), timestamps in ISO 8601."""
    if hasattr(value, "item") and not isinstance(value, datetime):
        value = value.item()  # numpy scalars
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    return value


def decode_value(value: Any) -> Any:
    """What :func:`encode_value` wrote, back (timestamps stay ISO text: the comparison parses them)."""
    return _NON_FINITE.get(value, value) if isinstance(value, str) else value


def as_utc(moment: Any) -> datetime:
    """A datetime (or pandas Timestamp) tz-aware in UTC; a naive one is taken as UTC (Feast's online timestamps)."""
    if hasattr(moment, "to_pydatetime"):
        moment = moment.to_pydatetime()
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def ensure_log_table(conn: psycopg.Connection) -> None:
    """The log table, idempotently; a hypertable on request_time where TimescaleDB is usable."""
    from training.infra.db import timescaledb_available

    hypertable = timescaledb_available(conn)
    conn.execute(LOG_DDL)
    if hypertable:
        if not conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()[0]:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute(
            "SELECT create_hypertable(%s, 'request_time', chunk_time_interval => make_interval(days => %s), "
            "create_default_indexes => FALSE, if_not_exists => TRUE, migrate_data => TRUE)",
            (LOG_TABLE, CHUNK_DAYS),
        )


def write_rows(conn: psycopg.Connection, rows: list[Logged]) -> int:
    """One INSERT of ``rows`` (parameters as arrays: the statement's size does not grow with the batch)."""
    if not rows:
        return 0
    columns = (
        [r.request_time for r in rows],
        [r.source for r in rows],
        [r.symbol for r in rows],
        [r.bar_timestamp for r in rows],
        [r.model_name for r in rows],
        [r.model_version for r in rows],
        [r.feature_service for r in rows],
        [float(r.probability) for r in rows],
        [json.dumps({k: encode_value(v) for k, v in r.features.items()}, allow_nan=False) for r in rows],
    )
    conn.execute(_INSERT, columns)
    return len(rows)


class PredictionLog:
    """Rows of one command (``source``) and model, written at once: ``predict`` and ``update`` score once."""

    def __init__(self, source: str, model_uri: str, feature_service: str, features: list[str]) -> None:
        from training.serving.daily_scores import model_identity

        self.source, self.feature_service = source, feature_service
        self.model_name, self.model_version = model_identity(model_uri)
        self.features = features  # the service's features, as the online row names them
        self._ready = False
        # How record() runs a write: at once here; predict bounds it as its other PostgreSQL calls.
        self.bound: Callable[..., Any] = lambda write, rows: write(rows)

    def entry(self, symbol: str, row: dict[str, Any], probability: float, at: datetime) -> Logged:
        """The log's row for one scored online ``row`` (``at``: when it was scored)."""
        return Logged(
            request_time=at,
            source=self.source,
            symbol=symbol,
            bar_timestamp=as_utc(row[AUDIT_FEATURE]),
            model_name=self.model_name,
            model_version=self.model_version,
            feature_service=self.feature_service,
            probability=probability,
            features={name: row.get(name) for name in self.features},
        )

    def record(self, rows: list[Logged]) -> None:
        self.bound(self.write, rows)

    def write(self, rows: list[Logged]) -> None:
        from training.infra import db

        if not rows:
            return
        with db.transaction() as conn:
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (STATEMENT_TIMEOUT,))
            if not self._ready:
                ensure_log_table(conn)
                self._ready = True
            write_rows(conn, rows)

    def close(self) -> None:
        """Nothing is held back here; :class:`BufferedLog` flushes."""


class BufferedLog(PredictionLog):
    """``serve``'s log: a request only appends to a list; a thread writes what gathered every ``interval``
    seconds (or at once past ``batch`` rows), and :meth:`close` writes the rest. A failed write keeps its rows for
    the next attempt (at most ``keep`` rows held, the oldest dropped beyond, with a warning): a PostgreSQL that
    is briefly away costs no request anything."""

    def __init__(self, *args: Any, interval: float = 1.0, batch: int = 2_000, keep: int = 200_000) -> None:
        super().__init__(*args)
        self.interval, self.batch, self.keep = interval, batch, keep
        self._rows: list[Logged] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def record(self, rows: list[Logged]) -> None:
        if self._closing:  # a request still running after shutdown began: its rows are written by itself
            self.write(rows)
            return
        with self._lock:
            self._rows.extend(rows)
            full = len(self._rows) >= self.batch
        if full:
            self._wake.set()

    def flush(self, strict: bool = False) -> None:
        """Write what gathered; on failure, keep it for the next flush (``strict``: and raise, at shutdown)."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return
        try:
            self.write(rows)
        except Exception as exc:  # a log write never fails a request; the rows wait
            with self._lock:
                self._rows[:0] = rows
                dropped = max(0, len(self._rows) - self.keep)
                del self._rows[:dropped]
            log.warning("prediction log: %d row(s) not written yet (%s)%s", len(rows), exc,
                        f"; {dropped} oldest dropped" if dropped else "")  # fmt: skip
            if strict:
                raise

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(self.interval)
            self._wake.clear()
            if not self._closing:
                self.flush()

    def close(self) -> None:
        """Stop the thread and write every row still held (serve's shutdown)."""
        self._closing = True
        self._wake.set()
        self._thread.join()
        self.flush(strict=True)


def request_time() -> datetime:
    """The scoring wall-clock time, tz-aware UTC."""
    return datetime.now(UTC)
