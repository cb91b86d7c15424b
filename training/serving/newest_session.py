"""The newest session's symbols: what ``POST /predict {}`` and ``update`` score.

``serve`` remembers the session it last saw, so a request starts its online read at once with those symbols
while PostgreSQL is asked, at the same time, which session is newest now. The answer is always PostgreSQL's
of this request: when ``update`` has ingested a new session (or added a symbol to it) since, the symbols whose
newest bar changed are read again before scoring, so the remembered session only decides what is read first,
never what is served. A silent Redis is thus reported within its timeout, not after a PostgreSQL query too.
"""

from __future__ import annotations

from datetime import date, datetime

from training.errors import InputError
from training.infra.schema import OHLCV_TABLE
from training.serving.scorer import Predictor
from training.serving.universe_scores import UniverseScores, read_rows, scored

# Each symbol's newest bar through the primary key (symbol, event_timestamp): a skip scan over the distinct
# symbols, then one index probe per symbol, so the cost follows the symbols, not the bars (a GROUP BY read
# every bar: 0.6 s on 5 million, against 0.05 s). One bar per (symbol, trade_date) is ingest's rule, so the
# newest stamp is on the newest date.
SESSION_QUERY = f"""
WITH RECURSIVE symbols AS (
    (SELECT symbol FROM {OHLCV_TABLE} ORDER BY symbol LIMIT 1)
    UNION ALL
    SELECT (SELECT b.symbol FROM {OHLCV_TABLE} b WHERE b.symbol > s.symbol ORDER BY b.symbol LIMIT 1)
    FROM symbols s WHERE s.symbol IS NOT NULL
), newest AS (
    SELECT bar.* FROM symbols s CROSS JOIN LATERAL (
        SELECT b.trade_date, b.symbol, b.event_timestamp FROM {OHLCV_TABLE} b
        WHERE b.symbol = s.symbol ORDER BY b.event_timestamp DESC LIMIT 1
    ) bar
)
SELECT trade_date, symbol, event_timestamp FROM newest WHERE trade_date = (SELECT max(trade_date) FROM newest)
ORDER BY symbol
"""


def session_symbols() -> tuple[date, dict[str, datetime]]:
    """The newest trading date in the offline store, and the symbols whose newest bar falls on it with that bar's
    stamp (what :func:`~training.serving.universe_scores.score_universe` would otherwise read again)."""
    from training.infra import db

    with db.connect() as conn:
        rows = conn.execute(SESSION_QUERY).fetchall()
    if not rows:
        raise InputError(f"{OHLCV_TABLE} is empty: nothing to score")
    return rows[0][0], {symbol: bar for _, symbol, bar in rows}


class NewestSession:
    """Scores every symbol of the newest session, reading the online store while PostgreSQL names the session.

    Shared by the server's workers: a request that finds another request's session remembered reads with it;
    whichever answer is remembered last, each request scores what PostgreSQL told it.
    """

    def __init__(self) -> None:
        self._remembered: dict[str, datetime] | None = None

    def score(self, predictor: Predictor) -> UniverseScores:
        remembered = self._remembered
        if remembered is None:  # the first request: nothing to read before PostgreSQL answers
            _, newest = predictor.offline.call(session_symbols)
            rows = read_rows(predictor, list(newest))
        else:
            session = predictor.offline.start(session_symbols)
            rows = read_rows(predictor, list(remembered))
            _, newest = session()
            changed = [symbol for symbol, bar in newest.items() if remembered.get(symbol) != bar]
            rows.update(read_rows(predictor, changed))  # read after PostgreSQL's answer: at least as new as it
        self._remembered = newest
        return scored(predictor, list(newest), newest, rows)
