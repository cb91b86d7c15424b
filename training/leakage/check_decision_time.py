"""Decision time: no row's features come from a feature version that was not yet usable at its decision.

For a dataset built with ``features.decision_time`` enabled, a version written at ``created`` is usable from
``created + lag`` until ``superseded + lag``. Each row's stored values of the raw feature columns (those the
features table holds under the same name) are looked up among every stored version of its joined bar
(``symbol``, ``feature_timestamp``), as known at the dataset's build, by the audit's own query over the table
and its history. A row fails when no version with its values was usable at its ``event_timestamp``: it was
built from a version known only later (a correction, a recomputation, or the bar itself published after the
decision). Rows whose values match no stored version at all fail too (nothing proves when they were known).

A dataset joined by event time does not claim this: the check passes without reading anything and says so.
The versions come from PostgreSQL; the audit has no reader of the lake's versions yet, so there the check
refuses such a dataset (the audit fails: it is never trained on unchecked).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.errors import InputError
from training.indicators.definitions import FEATURE_NAMES, REFERENCE_COLUMNS
from training.infra import db, environment
from training.infra.versions import SUPERSEDED, history_table
from training.leakage.panel import MISSING, BarHistory, ns
from training.leakage.result import CheckResult
from training.leakage.stream import Bars, Offending, add_counts, run_one

NAME = "decision_time"
FEATURES_TABLE = "features.technical_indicators"  # the audit reads the table by its own query
VersionReader = Callable[[list[str], list[str], datetime | None], pd.DataFrame]


def settings(dataset: Dataset) -> tuple[bool, int]:
    """Whether the dataset was built by decision time, and its publication lag in nanoseconds."""
    chosen = ((dataset.metadata.get("config") or {}).get("features") or {}).get("decision_time") or {}
    if not chosen.get("enabled"):
        return False, 0
    return True, int(str(chosen["publication_lag"]).removesuffix("s")) * 1_000_000_000


def read_versions(symbols: list[str], columns: list[str], known_at: datetime | None) -> pd.DataFrame:
    """Every version of the symbols' feature rows (``symbol``, ``event_timestamp``, ``created_timestamp``,
    ``superseded_timestamp`` NaT when current, ``columns``), as known at ``known_at`` (None: now).

    Chosen by the setting's name, not through training.engines: the audit shares no code with what builds."""
    return _VERSION_READERS[environment.engine()](symbols, columns, known_at)


def _lake_versions(symbols: list[str], columns: list[str], known_at: datetime | None) -> pd.DataFrame:
    raise InputError(
        "the audit reads feature versions from PostgreSQL only: a decision-time dataset built on the lake cannot be "
        "audited yet (build it with OHLCV_ENGINE unset)"
    )


def _postgres_versions(symbols: list[str], columns: list[str], known_at: datetime | None) -> pd.DataFrame:
    from psycopg import sql

    listed = sql.SQL(", ").join(sql.Identifier(c) for c in ["symbol", "event_timestamp", "created_timestamp", *columns])
    at = sql.Literal(known_at) if known_at is not None else sql.SQL("'infinity'::timestamptz")
    schema, table = FEATURES_TABLE.split(".")
    query = sql.SQL(
        "SELECT {listed}, NULL::timestamptz AS {sup} FROM {table} "
        "WHERE symbol = ANY(%(s)s) AND created_timestamp <= {at} "
        "UNION ALL SELECT {listed}, CASE WHEN {sup} <= {at} THEN {sup} END FROM {history} "
        "WHERE symbol = ANY(%(s)s) AND created_timestamp <= {at}"
    ).format(
        listed=listed,
        sup=sql.Identifier(SUPERSEDED),
        table=sql.Identifier(schema, table),
        history=sql.Identifier(*history_table(FEATURES_TABLE).split(".")),
        at=at,
    )
    with db.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        dates = ["event_timestamp", "created_timestamp", SUPERSEDED]
        return db.copy_out(conn, query, {"s": list(symbols)}, parse_dates=dates)


_VERSION_READERS: dict[str, VersionReader] = {"postgres": _postgres_versions, "spark": _lake_versions}


def _fingerprints(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One hash per row of the values (NaN equal to NaN, -0.0 to 0.0), to match rows with versions."""
    values = frame[list(columns)].astype(np.float64) + 0.0
    return pd.util.hash_pandas_object(values, index=False).to_numpy()


class DecisionTimeScan:
    name = NAME

    def __init__(self, dataset: Dataset, versions: VersionReader = read_versions) -> None:
        self.enabled, self.lag = settings(dataset)
        known_at = dataset.metadata.get("known_at")
        self.known_at = datetime.fromisoformat(known_at) if known_at else None
        self.raw = [f for f in dataset.features if f in {*FEATURE_NAMES, *REFERENCE_COLUMNS}]
        self.columns = ("symbol", "event_timestamp", "feature_timestamp", *self.raw) if self.enabled else ("symbol",)
        self.versions = versions
        self.offending = Offending()
        self.counts = {"rows": 0, "versions": 0, "known_after_decision": 0, "no_stored_version": 0}

    def add(self, frame: pd.DataFrame, bars: BarHistory) -> None:
        self.counts["rows"] += len(frame)
        if not self.enabled:
            return
        if not self.raw:
            raise InputError("the dataset has no raw feature column to look its versions up by")
        symbols = sorted(frame["symbol"].astype(str).unique())
        versions = self.versions(symbols, self.raw, self.known_at)
        rows = pd.DataFrame(
            {
                "row": np.arange(len(frame)),
                "symbol": frame["symbol"].astype(str).to_numpy(),
                "decided": ns(frame["event_timestamp"]),
                "joined": ns(frame["feature_timestamp"]),
                "values": _fingerprints(frame, self.raw),
            }
        )
        stored = pd.DataFrame(
            {
                "symbol": versions["symbol"].astype(str).to_numpy(),
                "joined": ns(versions["event_timestamp"]),
                "created": ns(versions["created_timestamp"]),
                "superseded": ns(versions[SUPERSEDED]),
                "values": _fingerprints(versions, self.raw),
            }
        )
        matched = rows.merge(stored, on=["symbol", "joined", "values"], how="left")
        created = matched["created"].fillna(MISSING).to_numpy(np.int64)
        ended = matched["superseded"].fillna(MISSING).to_numpy(np.int64)
        decided, lag = matched["decided"].to_numpy(), self.lag
        found = created != MISSING
        usable = found & (created + lag <= decided) & ((ended == MISSING) | (ended + lag > decided))
        per_row = pd.DataFrame({"row": matched["row"], "found": found, "usable": usable, "created": created})
        per_row = per_row.groupby("row").agg(found=("found", "any"), usable=("usable", "any"), first=("created", "max"))
        unknown = ~per_row["found"].to_numpy()
        later = ~unknown & ~per_row["usable"].to_numpy()
        bad = unknown | later
        picked = frame.iloc[np.flatnonzero(bad)]
        first = per_row["first"].to_numpy()[bad]
        self.offending.add(
            pd.DataFrame(
                {
                    "symbol": picked["symbol"].astype(str).to_numpy(),
                    "event_timestamp": pd.to_datetime(picked["event_timestamp"], utc=True).to_numpy(),
                    "feature_timestamp": pd.to_datetime(picked["feature_timestamp"], utc=True).to_numpy(),
                    "version_known_at": pd.to_datetime(np.where(first == MISSING, np.nan, first), utc=True),
                    "problem": np.where(
                        unknown[bad],
                        "no stored version has these values",
                        "joined a version usable only after the decision",
                    ),
                }
            )
        )
        add_counts(self.counts, {"versions": len(versions), "known_after_decision": later.sum(),
                                 "no_stored_version": unknown.sum()})  # fmt: skip

    def result(self) -> CheckResult:
        if not self.enabled:
            return CheckResult.verdict(
                NAME, f"{self.counts['rows']:,} rows joined by event time: decision-time knowledge not claimed",
                {"rows": self.counts["rows"], "enabled": False},
            )  # fmt: skip
        counts: dict[str, Any] = {**self.counts, "enabled": True, "publication_lag_seconds": self.lag / 1e9}
        return CheckResult.verdict(
            NAME,
            f"{self.counts['rows']:,} rows: each joined feature version was usable (created + "
            f"{self.lag / 1e9:g} s <= decision < superseded + lag)",
            counts,
            self.offending.table(),
            total=self.offending.total,
        )


def check_decision_time(dataset: Dataset, bars: Bars, versions: VersionReader = read_versions) -> CheckResult:
    return run_one(dataset, bars, DecisionTimeScan(dataset, versions))
