"""The rules of a load, written once for both engines: what is stored per bar, how a file without an adjusted
close keeps the stored adjustment, and what a load refuses (duplicate rows, a symbol left with both adjusted
and raw bars, a stamp another date already holds).

The queries are plain SQL that PostgreSQL and Spark SQL both run, over three relations each engine names:
``stage`` (the file's bars, dropped rows excluded unless said), ``plan`` (one row per staged bar with its
merged values and ``same_stamp``) and ``stored`` (the stored bars the load may touch). The plan itself, the
writes and the locking are each engine's own (:mod:`training.ingestion.upsert`, the lake's load).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from training.errors import InputError, name_some
from training.ingestion.file_lines import MAX_REPORTED_ROWS, name_lines

STORED_COLUMNS = (
    "symbol",
    "event_timestamp",
    "trade_date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "adj_open",
    "adj_high",
    "adj_low",
    "adj_close",
    "adj_volume",
)
VALUE_COLUMNS = STORED_COLUMNS[2:]
RAW = ("open", "high", "low", "close", "volume")
ADJUSTED = ("adj_open", "adj_high", "adj_low", "adj_close", "adj_volume")
# The stage also keeps each bar's file line (to name duplicates) and whether --on-invalid drop dropped it.
STAGED_COLUMNS = (*STORED_COLUMNS, "line", "dropped")


@dataclass(frozen=True)
class IngestResult:
    rows: int
    inserted: int
    updated: int  # changed values or a new session-close stamp
    symbols: int
    restamped: int = 0  # of the updated: stored at another stamp, moved to the file's
    readjusted: int = 0  # of the updated: restated by a re-adjustment kept as an adjustment event

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated


def merged_adjusted(column: str) -> str:
    """The adjusted value to store (``s``: the staged bar, ``o``: the stored one of its date): the file's, else
    the stored bar's factor (``adj_close / close``) applied to the file's raw values; a column absent from the
    file never erases a stored adjustment."""
    raw = column.removeprefix("adj_")
    rescaled = "s.volume / (o.adj_close / o.close)" if raw == "volume" else f"s.{raw} * (o.adj_close / o.close)"
    same_raw = " AND ".join(f"s.{c} = o.{c}" for c in RAW)
    return (
        f"CASE WHEN s.adj_close IS NOT NULL THEN s.{column} WHEN o.adj_close IS NULL THEN NULL "
        f"WHEN {same_raw} THEN o.{column} ELSE {rescaled} END AS {column}"
    )


def duplicates_query(stage: str) -> str:
    """Every row of a (symbol, trade_date) the file holds more than once, dropped rows included (a duplicate is
    malformed whatever its twin): (line, symbol, trade_date, how many in all), the first few by line."""
    return f"""
SELECT s.line, s.symbol, s.trade_date, count(*) OVER () AS total
FROM {stage} s
JOIN (SELECT symbol, trade_date FROM {stage} GROUP BY symbol, trade_date HAVING count(*) > 1) d
  ON d.symbol = s.symbol AND d.trade_date = s.trade_date
ORDER BY s.line
LIMIT {int(MAX_REPORTED_ROWS)}
"""


def mixed_adjustment_query(plan: str, stage: str, stored: str) -> str:
    """Symbols the load would leave with both adjusted and raw bars: the merged file rows plus every stored bar
    of the file's symbols on a date the file does not hold. (symbol, adjusted bars, raw bars), any order."""
    return f"""
WITH after AS (
    SELECT symbol, adj_close IS NOT NULL AS adjusted FROM {plan}
    UNION ALL
    SELECT t.symbol, t.adj_close IS NOT NULL AS adjusted FROM {stored} t
    WHERE t.symbol IN (SELECT symbol FROM {stage})
      AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.symbol = t.symbol AND s.trade_date = t.trade_date)
)
SELECT symbol, count(*) FILTER (WHERE adjusted), count(*) FILTER (WHERE NOT adjusted)
FROM after GROUP BY symbol HAVING bool_or(adjusted) AND bool_or(NOT adjusted)
"""


def taken_stamp_query(plan: str, stage: str, stored: str) -> str:
    """A bar whose new stamp is already taken by a stored bar of another date the file does not touch:
    (symbol, the file's date, the stored date), at most one."""
    return f"""
SELECT p.symbol, p.trade_date, t.trade_date AS stored_date FROM {plan} p
JOIN {stored} t ON t.symbol = p.symbol AND t.event_timestamp = p.event_timestamp AND t.trade_date <> p.trade_date
WHERE NOT p.same_stamp
  AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.symbol = t.symbol AND s.trade_date = t.trade_date)
LIMIT 1
"""


def duplicates_error(twins: Sequence[Sequence[Any]]) -> InputError:
    """``twins``: rows of :func:`duplicates_query`."""
    _, symbol, day, total = twins[0]
    lines = name_lines([line for line, *_ in twins], total)
    return InputError(f"duplicate (symbol, date) rows at line(s) {lines}, e.g. {symbol} {day}")


def mixed_adjustment_error(mixed: Sequence[Sequence[Any]]) -> InputError:
    """``mixed``: rows of :func:`mixed_adjustment_query`, named in symbol order."""
    named = name_some([f"{s} ({a} adjusted, {r} raw)" for s, a, r in sorted(tuple(row) for row in mixed)])
    return InputError(
        f"this load would leave {len(mixed)} symbol(s) with a mix of split/dividend-adjusted and raw bars: "
        f"{named}; indicators would jump where the series switch. Load a file with the adjusted close for "
        "those bars, or give --allow-mixed-adjustment to store them anyway"
    )


def taken_stamp_error(symbol: str, day: object, other: object) -> InputError:
    return InputError(
        f"the bar of {symbol} {day} would be stamped at the session close already stored for {symbol} {other}; "
        "check --exchange-tz and --session-close"
    )
