"""Score a whole universe: what ``predict`` does for one symbol, for every symbol, in few online reads and one
``predict_proba``.

Each symbol's online row passes ``predict``'s own checks (one bar across the views, fresh within the TTL,
every model input finite) against the symbol's newest offline bar, and must describe that very bar: a row
the online store has not caught up on would score yesterday again under today's name. A symbol that fails
is left out with the reason ``predict`` would give; the others are scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd

from training.contract import AUDIT_FEATURE, MATERIALIZE
from training.errors import InputError, ProjectError
from training.serving.daily_scores import Score
from training.serving.scorer import Predictor, feature_frame, newest_offline_bars, reported_probability

READ_BLOCK = 1_000  # symbols per online read: one round trip each, and the responses stay small


@dataclass(frozen=True)
class UniverseScores:
    scores: list[Score]
    skipped: dict[str, str]  # symbol -> why it was not scored
    features: pd.DataFrame  # the scored rows' model inputs, one row per scored symbol (index: symbol)


def score_universe(
    predictor: Predictor, symbols: Sequence[str], newest: Mapping[str, datetime] | None = None
) -> UniverseScores:
    """The newest bar of every symbol of ``symbols`` (those with bars), scored as ``predict`` would score it;
    ``newest``: each symbol's newest offline bar when the caller read it already (:func:`session_symbols`)."""
    if newest is None:
        newest = predictor.offline.call(newest_offline_bars, list(symbols))
    skipped = {symbol: "no bars in the offline store" for symbol in symbols if symbol not in newest}
    servable: list[tuple[str, dict]] = []
    wanted = [symbol for symbol in symbols if symbol in newest]
    for first in range(0, len(wanted), READ_BLOCK):
        block = wanted[first : first + READ_BLOCK]
        for symbol, row in zip(block, predictor.read_many(block), strict=True):
            reason = _refusal(predictor, symbol, row, newest[symbol])
            if reason:
                skipped[symbol] = reason
            else:
                servable.append((symbol, row))
    scores = []
    for (symbol, row), (predicted, by_class) in zip(
        servable, predictor.score_many([row for _, row in servable]), strict=True
    ):
        probability = reported_probability(predicted, by_class)
        scores.append(Score(symbol, newest[symbol], row[AUDIT_FEATURE], by_class, probability, int(predicted)))
    features = feature_frame([row for _, row in servable], predictor.model.inputs)
    features.index = pd.Index([symbol for symbol, _ in servable], name="symbol")
    return UniverseScores(scores, skipped, features)


def _refusal(predictor: Predictor, symbol: str, row: dict, newest) -> str | None:
    bar = row.get(AUDIT_FEATURE)
    if bar is None:
        return f"no online features: run `{MATERIALIZE}`"
    if bar != newest:
        return f"the online store holds the bar of {bar}, the offline store has {newest}: run `{MATERIALIZE}`"
    try:
        predictor.check(symbol, row, newest, "newest offline bar")
    except ProjectError as refused:
        return str(refused)
    return None


def session_symbols() -> tuple[date, dict[str, datetime]]:
    """The newest trading date in the offline store, and the symbols whose newest bar falls on it with that bar's
    stamp (what :func:`score_universe` would otherwise read again)."""
    from training.infra import db
    from training.infra.schema import OHLCV_TABLE

    query = f"""
    WITH newest AS (SELECT symbol, max(trade_date) AS day, max(event_timestamp) AS bar FROM {OHLCV_TABLE}
                    GROUP BY symbol)
    SELECT day, symbol, bar FROM newest WHERE day = (SELECT max(day) FROM newest) ORDER BY symbol
    """
    with db.connect() as conn:
        rows = conn.execute(query).fetchall()
    if not rows:
        raise InputError(f"{OHLCV_TABLE} is empty: nothing to score")
    return rows[0][0], {symbol: bar for _, symbol, bar in rows}
