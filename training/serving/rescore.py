"""Re-score past bars whose features changed after they were scored (a vendor's correction of an old bar).

A score row is stale when its bar's feature row (same symbol and event_timestamp) was written after the score
was: compute-features renews a feature row's created_timestamp only when its values change, and a re-scored
row's created_timestamp is renewed even when its numbers come out the same, so a rerun finds nothing stale.
The online store holds only each symbol's newest bar, so past bars are scored on their offline features, read
point-in-time through the model's own feature service (the inputs ``predict`` would have read that evening).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from training.errors import InputError
from training.indicators.feature_table import FEATURES_TABLE
from training.serving.daily_scores import SCORES_DDL, SCORES_TABLE, Score, upsert_scores
from training.serving.model_loading import LoadedModel
from training.serving.scorer import class_probabilities, reported_probability, unusable_inputs

if TYPE_CHECKING:
    import psycopg

_STALE = f"""
SELECT s.symbol, s.bar_timestamp, s.model_name, s.model_version, s.probability, s.predicted_class
FROM {SCORES_TABLE} s JOIN {FEATURES_TABLE} f ON f.symbol = s.symbol AND f.event_timestamp = s.bar_timestamp
WHERE f.created_timestamp > s.created_timestamp
ORDER BY s.model_name, s.model_version, s.symbol, s.bar_timestamp
"""
_DROP = f"""
DELETE FROM {SCORES_TABLE} WHERE symbol = %s AND bar_timestamp = %s AND model_name = %s AND model_version = %s
"""


@dataclass
class Rescored:
    rescored: int = 0  # rows scored again (written with a renewed created_timestamp)
    changed: int = 0  # of those, rows whose probability or class changed
    replaced: list[str] = field(default_factory=list)  # models that no longer resolve: their rows were re-scored
    # with the current model instead
    skipped: dict[str, str] = field(default_factory=dict)  # "symbol bar" -> why it was not re-scored


def model_uri(name: str, version: str) -> str:
    """The URI :func:`model_identity` split into (name, version)."""
    return f"models:/{name}/{version}" if version else name


def rescore_changed(
    conn: psycopg.Connection, store, current: LoadedModel, load: Callable[[str], LoadedModel]
) -> Rescored:
    """Re-score every stale row of ``predictions.daily_scores`` with the model that scored it (``load``), or with
    ``current`` when that model no longer resolves: the old model's row is then replaced by the current one's."""
    conn.execute(SCORES_DDL)
    stale = pd.DataFrame(
        conn.execute(_STALE).fetchall(),
        columns=["symbol", "bar_timestamp", "model_name", "model_version", "probability", "predicted_class"],
    )
    result = Rescored()
    for (name, version), rows in stale.groupby(["model_name", "model_version"], sort=True):
        uri = model_uri(name, version)
        replaced = False
        try:
            model = current if uri == current.uri else load(uri)
        except InputError:
            model, replaced = current, True
            result.replaced.append(uri)
        scores = _score_offline(store, model, rows.reset_index(drop=True), result.skipped)
        if replaced:  # the unresolvable model's stale rows go, the current model's take their place
            for score in scores:
                conn.execute(_DROP, (score.symbol, score.bar_timestamp, name, version))
        upsert_scores(conn, scores, model.uri, renew=True)
        before = {(r.symbol, r.bar_timestamp): (r.probability, r.predicted_class) for r in rows.itertuples()}
        result.rescored += len(scores)
        result.changed += sum(
            replaced or before[(s.symbol, s.bar_timestamp)] != (s.probability, s.predicted_class) for s in scores
        )
    return result


def _score_offline(store, model: LoadedModel, rows: pd.DataFrame, skipped: dict[str, str]) -> list[Score]:
    """The rows' bars scored on their point-in-time offline features through the model's feature service."""
    from training.dataset.historical_features import describe_service, point_in_time_features

    service = describe_service(store, model.feature_service)
    missing = [name for name in model.inputs if name not in service.features]
    if missing:
        raise InputError(f"feature service {model.feature_service!r} lacks the model's input(s) {', '.join(missing)}")
    stamps = pd.to_datetime(rows["bar_timestamp"], utc=True)
    entities = pd.DataFrame({"symbol": rows["symbol"], "event_timestamp": stamps})
    features = point_in_time_features(store, entities, service)
    usable = []
    for i, row in features.iterrows():
        bar = rows.at[i, "bar_timestamp"]
        unusable = unusable_inputs({name: row[name] for name in model.inputs})
        if pd.isna(row["feature_timestamp"]) or row["feature_timestamp"] != pd.Timestamp(bar):
            skipped[f"{rows.at[i, 'symbol']} {bar}"] = "no offline feature row of that bar"
        elif unusable:
            skipped[f"{rows.at[i, 'symbol']} {bar}"] = f"no finite value for {', '.join(unusable)}"
        else:
            usable.append(i)
    scored = class_probabilities(model, features.loc[usable, model.inputs])
    return [
        Score(
            rows.at[i, "symbol"],
            rows.at[i, "bar_timestamp"],
            features.at[i, "feature_timestamp"].to_pydatetime(),
            by_class,
            reported_probability(predicted, by_class),
            int(predicted),
        )
        for i, (predicted, by_class) in zip(usable, scored, strict=True)
    ]
