"""Replay the prediction log: each logged row's features recomputed as known at its request time, through the
offline store's ``get_historical_features``, and compared with what was served, feature by feature.

A logged row is replayed as the entity (its symbol, its online row's bar timestamp) read within
:func:`training.infra.versions.knowing` its request time: the as-of join then reads the features table's
version known then, so a bar corrected after it was served replays as it was served, not as it is now.

One retrieval per knowledge epoch, not per request: two request times see the same versions unless a version of
the features table became known (or was superseded) between them, so the requests are grouped by how many such
changes precede them (:func:`epochs`), and each group is one ``get_historical_features`` at its latest request.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from training.errors import InputError
from training.indicators.feature_table import FEATURES_TABLE
from training.infra.versions import SUPERSEDED, has_history, history_table, knowing
from training.serving.prediction_log import LOG_TABLE, Logged, as_utc, decode_value

if TYPE_CHECKING:
    import psycopg

ROW = "logged_row"
BLOCK_ROWS = 50_000  # entity rows per retrieval


@dataclass
class FeatureReport:
    """How one feature compared over the replayed rows."""

    name: str
    compared: int = 0
    mismatched: int = 0
    example: str = ""  # the first mismatch, described


@dataclass
class ReplayReport:
    rows: int
    epochs: int
    features: dict[str, FeatureReport] = field(default_factory=dict)
    differing: set[int] = field(default_factory=set)  # positions of the rows with a mismatch

    def table(self) -> str:
        """One line per feature: compared, mismatched, the first mismatch."""
        width = max([len("feature"), *(len(name) for name in self.features)])
        lines = [f"{'feature':<{width}}  {'compared':>8}  {'mismatched':>10}  first mismatch"]
        for report in self.features.values():
            lines.append(
                f"{report.name:<{width}}  {report.compared:>8}  {report.mismatched:>10}  {report.example or '-'}"
            )
        return "\n".join(lines)


def read_log(conn: psycopg.Connection, start: datetime, end: datetime) -> list[Logged]:
    """The log's rows with ``start <= request_time < end``, oldest first (nothing when no table exists yet)."""
    if conn.execute("SELECT to_regclass(%s)", (LOG_TABLE,)).fetchone()[0] is None:
        return []
    rows = conn.execute(
        "SELECT request_time, source, symbol, bar_timestamp, model_name, model_version, feature_service, "
        f"probability, features FROM {LOG_TABLE} WHERE request_time >= %s AND request_time < %s "
        "ORDER BY request_time, symbol",
        (start, end),
    ).fetchall()
    return [Logged(*row[:-1], features={k: decode_value(v) for k, v in row[-1].items()}) for row in rows]


def logged_span(conn: psycopg.Connection) -> tuple[datetime, datetime] | None:
    """The first and last request time in the log (None: empty or absent), for an error about an empty range."""
    if conn.execute("SELECT to_regclass(%s)", (LOG_TABLE,)).fetchone()[0] is None:
        return None
    first, last = conn.execute(f"SELECT min(request_time), max(request_time) FROM {LOG_TABLE}").fetchone()
    return None if first is None else (first, last)


def knowledge_changes(conn: psycopg.Connection, first: datetime, last: datetime) -> list[datetime]:
    """Every time in [first, last] at which a feature version became known or was superseded, sorted."""
    queries = [f"SELECT created_timestamp FROM {FEATURES_TABLE} WHERE created_timestamp BETWEEN %(a)s AND %(b)s"]
    if has_history(conn, FEATURES_TABLE):
        history = history_table(FEATURES_TABLE)
        queries += [
            f"SELECT created_timestamp FROM {history} WHERE created_timestamp BETWEEN %(a)s AND %(b)s",
            f"SELECT {SUPERSEDED} FROM {history} WHERE {SUPERSEDED} BETWEEN %(a)s AND %(b)s",
        ]
    query = " UNION ".join(queries) + " ORDER BY 1"
    return [row[0] for row in conn.execute(query, {"a": first, "b": last}).fetchall()]


def epochs(times: Iterable[datetime], changes: list[datetime]) -> list[int]:
    """Each time's knowledge epoch: how many changes happened at or before it (equal epochs, equal versions).

    >>> from datetime import datetime as t
    >>> epochs([t(2020, 1, 1), t(2020, 1, 2), t(2020, 1, 3)], [t(2020, 1, 2)])
    [0, 1, 1]
    """
    return [bisect.bisect_right(changes, time) for time in times]


def same(logged: Any, replayed: Any) -> bool:
    """Whether a served value equals its replay: missing (None, NaN) on both sides, the same instant, or the same
    number exactly (the log keeps every double exactly: see :func:`training.serving.prediction_log.encode_value`)."""
    if _missing(logged) or _missing(replayed):
        return _missing(logged) and _missing(replayed)
    if isinstance(replayed, datetime | pd.Timestamp):
        try:
            return as_utc(pd.Timestamp(logged)) == as_utc(pd.Timestamp(replayed))
        except (ValueError, TypeError):
            return False
    if isinstance(replayed, int | float) and not isinstance(replayed, bool):
        try:
            return float(logged) == float(replayed)
        except (ValueError, TypeError):
            return False
    return logged == replayed


def _missing(value: Any) -> bool:
    return value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def replayed_rows(store: Any, service: str, rows: list[Logged], known_at: datetime) -> list[dict[str, Any]]:
    """The service's features of each row's (symbol, bar) through ``get_historical_features``, as known at
    ``known_at``, one dict per row in order."""
    keys = list(dict.fromkeys((row.symbol, row.bar_timestamp) for row in rows))
    entities = pd.DataFrame(
        {
            "symbol": [symbol for symbol, _ in keys],
            "event_timestamp": pd.to_datetime([bar for _, bar in keys], utc=True),
            ROW: range(len(keys)),
        }
    )
    with knowing(known_at):
        frame = store.get_historical_features(entity_df=entities, features=store.get_feature_service(service)).to_df()
    frame = frame.sort_values(ROW, kind="stable").reset_index(drop=True)
    if len(frame) != len(keys):
        raise InputError(f"the offline store returned {len(frame)} rows for {len(keys)} logged entities")
    records = frame.drop(columns=["symbol", "event_timestamp", ROW]).to_dict("records")
    by_key = dict(zip(keys, records, strict=True))
    return [by_key[(row.symbol, row.bar_timestamp)] for row in rows]


def compare(report: ReplayReport, index: int, row: Logged, replayed: dict[str, Any]) -> None:
    """Count one logged row's features into ``report`` (a feature the replay lacks counts as a mismatch)."""
    for name, value in row.features.items():
        feature = report.features.setdefault(name, FeatureReport(name))
        feature.compared += 1
        if name in replayed and same(value, replayed[name]):
            continue
        feature.mismatched += 1
        report.differing.add(index)
        if not feature.example:
            got = replayed.get(name, "absent from the service")
            feature.example = (
                f"{row.symbol} bar {row.bar_timestamp.isoformat()} requested {row.request_time.isoformat()} "
                f"({row.source}): served {value!r}, replayed {got!r}"
            )


def replay(
    conn: psycopg.Connection,
    store: Any,
    rows: list[Logged],
    progress: Callable[[Iterable[Any]], Any] = lambda groups: groups,
) -> ReplayReport:
    """Replay ``rows`` (:func:`read_log`'s) and compare: one retrieval per (feature service, knowledge epoch)."""
    from feast.errors import FeatureServiceNotFoundException

    changes = knowledge_changes(conn, rows[0].request_time, rows[-1].request_time)
    groups: dict[tuple[str, int], list[int]] = {}
    for index, (row, epoch) in enumerate(zip(rows, epochs((r.request_time for r in rows), changes), strict=True)):
        groups.setdefault((row.feature_service, epoch), []).append(index)
    report = ReplayReport(rows=len(rows), epochs=len({epoch for _, epoch in groups}))
    for (service, _), indexes in progress(list(groups.items())):
        for first in range(0, len(indexes), BLOCK_ROWS):
            block = indexes[first : first + BLOCK_ROWS]
            chosen = [rows[i] for i in block]
            known_at = max(row.request_time for row in chosen)
            try:
                replayed = replayed_rows(store, service, chosen, known_at)
            except FeatureServiceNotFoundException:
                raise InputError(
                    f"feature service {service!r} of logged predictions is no longer registered in Feast project "
                    f"{store.project}: re-apply the repository that served them"
                ) from None
            for index, row, values in zip(block, chosen, replayed, strict=True):
                compare(report, index, row, values)
    return report
