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
from datetime import datetime

import pandas as pd

from training.contract import AUDIT_FEATURE, MATERIALIZE
from training.errors import ProjectError
from training.serving.daily_scores import Score
from training.serving.prediction_log import request_time
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
    ``newest``: each symbol's newest offline bar when the caller read it already (``session_symbols``).
    Otherwise PostgreSQL is asked while the online store is read, not before: a silent online store is
    reported within its timeout, never after a PostgreSQL query too."""
    if newest is not None:
        return scored(predictor, symbols, newest, read_rows(predictor, [s for s in symbols if s in newest]))
    bars = predictor.offline.start(newest_offline_bars, list(symbols))
    rows = read_rows(predictor, list(symbols))
    return scored(predictor, symbols, bars(), rows)


def read_rows(predictor: Predictor, symbols: Sequence[str]) -> dict[str, dict]:
    """Each symbol's online row (:meth:`Predictor.read_many`), in reads of READ_BLOCK symbols."""
    rows: dict[str, dict] = {}
    for first in range(0, len(symbols), READ_BLOCK):
        block = list(symbols[first : first + READ_BLOCK])
        rows.update(zip(block, predictor.read_many(block), strict=True))
    return rows


def scored(
    predictor: Predictor, symbols: Sequence[str], newest: Mapping[str, datetime], rows: Mapping[str, dict]
) -> UniverseScores:
    """The symbols' online ``rows`` (every symbol with a ``newest`` bar has one) checked and scored."""
    skipped = {symbol: "no bars in the offline store" for symbol in symbols if symbol not in newest}
    servable: list[tuple[str, dict]] = []
    for symbol in symbols:
        if symbol in newest:
            reason = _refusal(predictor, symbol, rows[symbol], newest[symbol])
            if reason:
                skipped[symbol] = reason
            else:
                servable.append((symbol, rows[symbol]))
    scores, logged = [], []
    at = request_time()
    for (symbol, row), (predicted, by_class) in zip(
        servable, predictor.score_many([row for _, row in servable]), strict=True
    ):
        probability = reported_probability(predicted, by_class)
        scores.append(Score(symbol, newest[symbol], row[AUDIT_FEATURE], by_class, probability, int(predicted)))
        if predictor.log is not None:
            logged.append(predictor.log.entry(symbol, row, probability, at))
    if predictor.log is not None:
        predictor.log.record(logged)
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
