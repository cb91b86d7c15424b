"""``predictions.daily_scores``: each session's score of every symbol by a model, kept for the desk to look back on.

One row per (symbol, bar, model name, model version). The upsert writes only rows whose numbers changed, so
scoring a session twice writes nothing, while a corrected bar (new features, so new probabilities or a new
feature row) re-scores its row and renews its created_timestamp: the score's write time, which
:mod:`.rescore` compares with its feature row's to find past bars scored before a correction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

SCORES_TABLE = "predictions.daily_scores"
SCORES_DDL = f"""
CREATE SCHEMA IF NOT EXISTS predictions;
CREATE TABLE IF NOT EXISTS {SCORES_TABLE} (
    symbol            text             NOT NULL,
    bar_timestamp     timestamptz      NOT NULL,  -- the bar scored (its close)
    model_name        text             NOT NULL,
    model_version     text             NOT NULL,
    probabilities     jsonb            NOT NULL,  -- P(class) per class label of the model
    probability       double precision NOT NULL,  -- P(positive class) for a binary model, else P(predicted class)
    predicted_class   integer          NOT NULL,
    feature_timestamp timestamptz      NOT NULL,  -- the served feature row's own bar (bar_timestamp when current)
    created_timestamp timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, bar_timestamp, model_name, model_version)
);
"""
_UPSERT = f"""
INSERT INTO {SCORES_TABLE} AS s (symbol, bar_timestamp, model_name, model_version, probabilities, probability,
                                 predicted_class, feature_timestamp)
SELECT symbol, bar_timestamp, %(name)s, %(version)s, probabilities::jsonb, probability, predicted_class,
       feature_timestamp
FROM unnest(%(symbol)s::text[], %(bar)s::timestamptz[], %(probabilities)s::text[], %(probability)s::float8[],
            %(predicted)s::int[], %(feature)s::timestamptz[])
     AS t(symbol, bar_timestamp, probabilities, probability, predicted_class, feature_timestamp)
ON CONFLICT (symbol, bar_timestamp, model_name, model_version) DO UPDATE
SET probabilities = EXCLUDED.probabilities, probability = EXCLUDED.probability,
    predicted_class = EXCLUDED.predicted_class, feature_timestamp = EXCLUDED.feature_timestamp,
    created_timestamp = now()
"""
_ONLY_CHANGED = """
WHERE (s.probabilities, s.probability, s.predicted_class, s.feature_timestamp)
      IS DISTINCT FROM (EXCLUDED.probabilities, EXCLUDED.probability, EXCLUDED.predicted_class,
                        EXCLUDED.feature_timestamp)
"""


@dataclass(frozen=True)
class Score:
    """One symbol's score of one bar."""

    symbol: str
    bar_timestamp: datetime
    feature_timestamp: datetime
    probabilities: dict[str, float]
    probability: float
    predicted_class: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "bar_timestamp": self.bar_timestamp.isoformat(),
            "feature_timestamp": self.feature_timestamp.isoformat(),
            "probability": self.probability,
            "class": self.predicted_class,
            "probabilities": self.probabilities,
        }


def model_identity(uri: str) -> tuple[str, str]:
    """(name, version) of a registered model's ``models:/name/version`` URI; any other URI is its own name."""
    if uri.startswith("models:/"):
        name, _, version = uri.removeprefix("models:/").rpartition("/")
        if name:
            return name, version
    return uri, ""


def upsert_scores(conn: psycopg.Connection, scores: list[Score], model_uri: str, renew: bool = False) -> int:
    """Write ``scores`` of the model at ``model_uri``; returns how many rows were inserted or changed.

    ``renew``: every row's created_timestamp is renewed, its numbers changed or not (a re-score of a bar whose
    features changed records that it was scored after them)."""
    conn.execute(SCORES_DDL)
    if not scores:
        return 0
    name, version = model_identity(model_uri)
    params: dict[str, Any] = {
        "name": name,
        "version": version,
        "symbol": [s.symbol for s in scores],
        "bar": [s.bar_timestamp for s in scores],
        # Keys sorted: jsonb compares by value, but a stable text keeps the stored documents identical too.
        "probabilities": [json.dumps(s.probabilities, sort_keys=True) for s in scores],
        "probability": [s.probability for s in scores],
        "predicted": [int(s.predicted_class) for s in scores],
        "feature": [s.feature_timestamp for s in scores],
    }
    with conn.cursor() as cur:
        cur.execute(_UPSERT + ("" if renew else _ONLY_CHANGED) + "RETURNING 1", params)
        return cur.rowcount
