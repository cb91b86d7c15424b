"""Recognise, in a load's plan, the bars a re-adjustment restates, and record them as adjustment events.

A vendor's file after a dividend or split restates every earlier ``adj_close`` of the symbol by one ratio, raw
values unchanged. Kept per bar, that copies the symbol's whole history into the history table; kept as an event
(:mod:`training.infra.adjustments`), it is one row per run of consecutive bars. Only bars for which undoing the
event with the readers' own SQL gives back the stored version bit for bit join a run; the others (the
residuals: a vendor's rounding loses digits the ratio cannot give back) are archived per bar as before.

How the event is found, per symbol and knowledge time: the bars' ratios ``new / old`` are grouped to 9 decimals;
each group of at least :data:`MIN_RUN` bars tries a few candidate ratios (its median, its mode, the median
rounded to 1-15 significant digits) with no rounding and with rounding to :data:`~training.infra.adjustments.
DIGITS` significant digits, on a sample of the group, and keeps the candidate that gives back the most bars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from training.infra.adjustments import ADJUSTMENTS_TABLE, DIGITS, derived_prices, restored_close
from training.infra.schema import OHLCV_TABLE
from training.ingestion.load_rules import RAW

if TYPE_CHECKING:
    import psycopg

MIN_RUN = 2  # an event row costs about one history row: a run of one bar is archived instead
SAMPLE = 1_000  # bars of a group the candidates are scored on
RATIO_KEY = "round(ratio::numeric, 9)"
_IN_GROUP = "r.symbol = c.symbol AND r.knowledge = c.knowledge AND round(r.ratio::numeric, 9) = c.key"

_SAME_RAW = " AND ".join(f"p.{c} = p.stored_{c}" for c in RAW)
_STORED_DERIVED = " AND ".join(
    f"p.stored_{c} = {expr}" for c, expr in derived_prices("p.stored_adj_close", "p.").items() if c != "adj_close"
)
# Bars whose only change is the adjusted close, whose stored adjusted prices follow from it (as a file's do),
# and whose stored version is not newer than the restatement's knowledge time.
_RESTATED = f"""
CREATE TEMP TABLE ohlcv_restated ON COMMIT DROP AS
SELECT p.symbol, p.event_timestamp, p.adj_close AS new, p.stored_adj_close AS old,
       p.adj_close / p.stored_adj_close AS ratio, p.knowledge,
       NULL::float8 AS chosen, NULL::smallint AS digits, false AS exact
FROM ohlcv_plan p
WHERE p.changed AND {_SAME_RAW} AND p.adj_close IS NOT NULL AND p.stored_adj_close IS NOT NULL
  AND p.adj_close <> p.stored_adj_close AND {_STORED_DERIVED} AND p.stored_created <= p.knowledge
"""
_GROUPS = f"""
SELECT symbol, knowledge, {RATIO_KEY} AS key, percentile_disc(0.5) WITHIN GROUP (ORDER BY ratio),
       mode() WITHIN GROUP (ORDER BY ratio)
FROM ohlcv_restated GROUP BY 1, 2, 3 HAVING count(*) >= {MIN_RUN}
"""
_CANDIDATES = (
    "CREATE TEMP TABLE ohlcv_candidates (id int, symbol text, knowledge timestamptz, key numeric, ratio float8, "
    "digits smallint) ON COMMIT DROP"
)
_SCORES = f"""
SELECT c.id, count(*) FILTER (WHERE {restored_close("r.new", "c.ratio", "c.digits")} = r.old)
FROM ohlcv_candidates c
JOIN (SELECT *, row_number() OVER (PARTITION BY symbol, knowledge, {RATIO_KEY} ORDER BY event_timestamp) AS n
      FROM ohlcv_restated) r
  ON {_IN_GROUP} AND r.n <= {SAMPLE}
GROUP BY c.id
"""
_CHOOSE = f"""
UPDATE ohlcv_restated r SET chosen = c.ratio, digits = c.digits,
       exact = {restored_close("r.new", "c.ratio", "c.digits")} = r.old
FROM ohlcv_candidates c
WHERE c.id = ANY(%s) AND {_IN_GROUP}
"""
# Runs of consecutive bars of a symbol restated exactly by one event (gaps and islands over the plan's rows and
# the symbol's stored bars the file does not hold, which break runs); the count check after it is a guard.
_RUNS = f"""
CREATE TEMP TABLE ohlcv_runs ON COMMIT DROP AS
WITH symbols AS (SELECT DISTINCT symbol FROM ohlcv_restated WHERE exact), bars AS (
    SELECT p.symbol, p.event_timestamp, r.chosen, r.digits, p.knowledge, coalesce(r.exact, false) AS exact
    FROM ohlcv_plan p LEFT JOIN ohlcv_restated r ON r.symbol = p.symbol AND r.event_timestamp = p.event_timestamp
    WHERE p.symbol IN (SELECT symbol FROM symbols)
    UNION ALL
    SELECT t.symbol, t.event_timestamp, NULL, NULL, NULL, false FROM {OHLCV_TABLE} t
    WHERE t.symbol IN (SELECT symbol FROM symbols)
      AND NOT EXISTS (SELECT 1 FROM ohlcv_plan p WHERE p.symbol = t.symbol AND p.event_timestamp = t.event_timestamp)
), ordered AS (
    SELECT *, row_number() OVER (PARTITION BY symbol ORDER BY event_timestamp) AS i FROM bars
), islands AS (
    SELECT *, i - row_number() OVER (PARTITION BY symbol, chosen, digits, knowledge ORDER BY event_timestamp) AS run
    FROM ordered WHERE exact
)
SELECT symbol, chosen AS ratio, digits, knowledge, min(event_timestamp) AS first_timestamp,
       max(event_timestamp) AS last_timestamp, count(*)::int AS bars
FROM islands GROUP BY symbol, chosen, digits, knowledge, run HAVING count(*) >= {MIN_RUN}
"""
_GAPPED = f"""
DELETE FROM ohlcv_runs r
WHERE (SELECT count(*) FROM {OHLCV_TABLE} t
       WHERE t.symbol = r.symbol AND t.event_timestamp BETWEEN r.first_timestamp AND r.last_timestamp) <> r.bars
"""
_RECORD = f"""
INSERT INTO {ADJUSTMENTS_TABLE} (symbol, first_timestamp, last_timestamp, ratio, digits, bars, created_timestamp)
SELECT symbol, first_timestamp, last_timestamp, ratio, digits, bars, knowledge FROM ohlcv_runs
"""
_MARK = """
UPDATE ohlcv_plan p SET evented = true FROM ohlcv_runs r
WHERE p.symbol = r.symbol AND p.event_timestamp BETWEEN r.first_timestamp AND r.last_timestamp
"""


def candidates(median: float, mode: float) -> list[float]:
    """Ratios to try for a group: its mode and median, and the median rounded to 1-15 significant digits when
    that stays within 1e-9 of it (a vendor's factor is usually a short decimal: 0.99, 0.5)."""
    found = [mode, median]
    for k in range(1, 16):
        rounded = float(f"{median:.{k}g}")
        if rounded > 0 and abs(rounded / median - 1) < 1e-9:
            found.append(rounded)
    return list(dict.fromkeys(found))


def record_events(conn: psycopg.Connection) -> tuple[int, int]:
    """Mark the plan's rows a re-adjustment restated exactly (``ohlcv_plan.evented``) and record their events;
    (events, bars) recorded. The caller archives the changed rows not marked and keeps the marked rows'
    created_timestamp."""
    conn.execute(_RESTATED)
    groups = conn.execute(_GROUPS).fetchall()
    if not groups:
        return 0, 0
    rows, options = [], {}
    for group, (symbol, knowledge, key, median, mode) in enumerate(groups):
        for ratio in candidates(median, mode):
            for digits in (None, *DIGITS):
                options[len(rows)] = (group, digits is not None)
                rows.append((len(rows), symbol, knowledge, key, ratio, digits))
    conn.execute(_CANDIDATES)
    with conn.cursor() as cur, cur.copy("COPY ohlcv_candidates FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    scores = dict(conn.execute(_SCORES).fetchall())
    best: dict[int, tuple[int, bool, int]] = {}
    for option, (group, rounded) in options.items():
        score = (scores.get(option, 0), not rounded, -option)  # most bars back; then unrounded; then first tried
        if group not in best or score > best[group]:
            best[group] = score
    conn.execute(_CHOOSE, ([-score[2] for score in best.values()],))
    conn.execute(_RUNS)
    conn.execute(_GAPPED)
    events, bars = conn.execute("SELECT count(*), coalesce(sum(bars), 0) FROM ohlcv_runs").fetchone()
    if events:
        conn.execute(_RECORD)
        conn.execute(_MARK)
    return int(events), int(bars)
