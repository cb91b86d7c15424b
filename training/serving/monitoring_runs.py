"""``predictions.monitoring_runs``: each scored session's drift report, pending until its MLflow run exists.

The report is written in the transaction that writes the session's scores, with no run id; the run id is
set once the monitoring run is logged. A crash between the two (kill -9, MLflow down) leaves the row pending,
and the next ``update`` logs it: no session's monitoring run is lost because nothing else changed since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from training.serving.daily_scores import model_identity
from training.serving.drift import DriftReport

if TYPE_CHECKING:
    import psycopg

MONITORING_TABLE = "predictions.monitoring_runs"
MONITORING_DDL = f"""
CREATE SCHEMA IF NOT EXISTS predictions;
CREATE TABLE IF NOT EXISTS {MONITORING_TABLE} (
    session           date        NOT NULL,
    model_name        text        NOT NULL,
    model_version     text        NOT NULL,
    report            jsonb       NOT NULL,  -- the drift report of the session's scored symbols
    scored            integer     NOT NULL,
    not_scored        integer     NOT NULL,
    mlflow_run_id     text,                  -- NULL: pending, its monitoring run not logged yet
    created_timestamp timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session, model_name, model_version)
);
"""
_RECORD = f"""
INSERT INTO {MONITORING_TABLE} AS m (session, model_name, model_version, report, scored, not_scored)
VALUES (%(session)s, %(name)s, %(version)s, %(report)s::jsonb, %(scored)s, %(not_scored)s)
ON CONFLICT (session, model_name, model_version) DO UPDATE
SET report = EXCLUDED.report, scored = EXCLUDED.scored, not_scored = EXCLUDED.not_scored, mlflow_run_id = NULL,
    created_timestamp = now()
"""


@dataclass(frozen=True)
class PendingRun:
    session: date
    model_uri: str
    report: DriftReport
    scored: int
    not_scored: int


def record_pending(
    conn: psycopg.Connection, session: date, model_uri: str, report: DriftReport, scored: int, not_scored: int
) -> None:
    """The session's report, pending (a re-scored session's earlier run is superseded by a new one)."""
    conn.execute(MONITORING_DDL)
    name, version = model_identity(model_uri)
    conn.execute(_RECORD, {"session": session, "name": name, "version": version, "report": report.to_json(),
                           "scored": scored, "not_scored": not_scored})  # fmt: skip


def pending_runs(conn: psycopg.Connection) -> list[PendingRun]:
    """Every session whose monitoring run is not logged yet, oldest first."""
    conn.execute(MONITORING_DDL)
    rows = conn.execute(
        f"SELECT session, model_name, model_version, report::text, scored, not_scored FROM {MONITORING_TABLE} "
        "WHERE mlflow_run_id IS NULL ORDER BY session, model_name, model_version"
    ).fetchall()
    return [
        PendingRun(session, f"models:/{name}/{version}" if version else name, DriftReport.from_json(report), s, n)
        for session, name, version, report, s, n in rows
    ]


def mark_logged(conn: psycopg.Connection, pending: PendingRun, run_id: str) -> None:
    name, version = model_identity(pending.model_uri)
    conn.execute(
        f"UPDATE {MONITORING_TABLE} SET mlflow_run_id = %s "
        "WHERE session = %s AND model_name = %s AND model_version = %s AND mlflow_run_id IS NULL",
        (run_id, pending.session, name, version),
    )
