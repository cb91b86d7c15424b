"""Score the newest bar of a symbol: online features from Feast, the model from :mod:`.model_loading`.

Freshness is judged against the newest offline bar of the symbol or an explicit ``as_of`` time,
never against the wall clock: the bundled data ends in 2013.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from training.contract import (
    AUDIT_FEATURE,
    COMPUTE_FEATURES,
    DEFAULT_EXCHANGE_TZ,
    FEAST_APPLY,
    MATERIALIZE,
    normalise_symbol,
)
from training.dataset.offline_bars import describe_known, known_symbols
from training.errors import InputError, ProjectError
from training.indicators.feature_table import FEATURES_TABLE, VIEW_BAR_FIELDS, VIEW_VERSION_FIELDS
from training.infra import db, settings
from training.infra.schema import OHLCV_TABLE
from training.serving.bounded import Store
from training.serving.model_loading import LoadedModel
from training.serving.online_reader import OnlineReader
from training.serving.online_store import ensure_online_tables
from training.serving.prediction_log import BufferedLog, PredictionLog, request_time

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore


class StaleFeatures(ProjectError):
    """The online row is older than the feature views' TTL allows at the reference time (or after it)."""


class SymbolNotServed(InputError):
    """The symbol has no online features: unknown everywhere, or known offline but not materialized."""


class MixedBars(StaleFeatures):
    """The views of one online row describe different bars (a materialize stopped between views)."""


class MixedVersions(MixedBars):
    """The views of one online row hold two versions of the same bar (a correction materialized partway)."""


class UnusableFeatures(InputError):
    """The newest row lacks a finite value for some model input: scoring it would be a guess (or a crash)."""


@dataclass(frozen=True)
class Prediction:
    symbol: str
    probability: float  # P(positive class) for a binary model, P(predicted class) otherwise
    predicted_class: Any
    probabilities: dict[str, float]
    bar_timestamp: datetime
    reference_time: datetime
    reference: str  # "newest offline bar" or "--as-of"
    ttl: timedelta | None
    model: str
    feature_service: str
    features: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "probability": self.probability,
            "class": _plain(self.predicted_class),
            "probabilities": self.probabilities,
            "bar_timestamp": self.bar_timestamp.isoformat(),
            "reference_time": self.reference_time.isoformat(),
            "reference": self.reference,
            "model": self.model,
            "feature_service": self.feature_service,
            "features": self.features,
            "notes": self.notes,
        }


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones (JSON, printing)."""
    return value.item() if hasattr(value, "item") else value


def newest_offline_bar(symbol: str) -> datetime | None:
    """The newest bar of ``symbol`` in the bars or the feature table (None when neither has it)."""
    with db.connect() as conn:
        exists = [conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] for t in (OHLCV_TABLE, FEATURES_TABLE)]
        tables = [t for t, found in zip((OHLCV_TABLE, FEATURES_TABLE), exists, strict=True) if found]
        newest = [
            conn.execute(f"SELECT max(event_timestamp) FROM {table} WHERE symbol = %s", (symbol,)).fetchone()[0]
            for table in tables
        ]
    found = [t for t in newest if t is not None]
    return max(found) if found else None


def reported_probability(predicted: Any, by_class: dict[str, float]) -> float:
    """The one probability a prediction reports: binary, the positive class's (scikit-learn's second column);
    otherwise the predicted class's."""
    return list(by_class.values())[-1] if len(by_class) == 2 else by_class[str(predicted)]


def newest_offline_bars(symbols: list[str]) -> dict[str, datetime]:
    """The newest stored bar of each of ``symbols`` that has one."""
    with db.connect() as conn:
        rows = conn.execute(
            f"SELECT symbol, max(event_timestamp) FROM {OHLCV_TABLE} WHERE symbol = ANY(%s) GROUP BY symbol",
            (list(symbols),),
        )
        return {symbol: newest for symbol, newest in rows}


class Predictor:
    """The model and its feature service, resolved once; :meth:`predict` reads the online row (Feast's, through
    :class:`.online_reader.OnlineReader`) and scores a symbol."""

    def __init__(self, store: FeatureStore, model: LoadedModel, log: str | None = None) -> None:
        """``log``: the command whose scored rows go to the prediction log ("serve": buffered), None: unlogged."""
        from feast.errors import FeatureServiceNotFoundException

        self.store = store
        self.model = model
        try:
            self.service = store.get_feature_service(model.feature_service)
        except FeatureServiceNotFoundException:
            raise InputError(
                f"feature service {model.feature_service!r} of model {model.uri} is not registered in Feast "
                f"project {store.project}: run `{FEAST_APPLY}`"
            ) from None
        served = [f.name for p in self.service.feature_view_projections for f in p.features]
        missing = [name for name in model.inputs if name not in served]
        if missing:
            raise InputError(
                f"feature service {model.feature_service!r} lacks the model's input(s) {', '.join(missing)}; "
                "was the model trained on another service?"
            )
        if AUDIT_FEATURE not in served:
            raise InputError(f"feature service {model.feature_service!r} does not serve {AUDIT_FEATURE}")
        ensure_online_tables(store)
        self.ttl = _service_ttl(store, self.service)
        views = _source_views(store, self.service)
        # Each view's own bar timestamp and row version, read in the same call as the service's features (not
        # model inputs): the row is scored only when every view describes the same version of the same bar.
        self.bar_fields = {view: VIEW_BAR_FIELDS[view] for view in sorted(views) if view in VIEW_BAR_FIELDS}
        self.version_fields = {view: VIEW_VERSION_FIELDS[view] for view in sorted(views) if view in VIEW_VERSION_FIELDS}
        served_refs = [f"{p.name_to_use()}:{f.name}" for p in self.service.feature_view_projections for f in p.features]
        checked = [*self.bar_fields.items(), *self.version_fields.items()]
        self.refs = list(dict.fromkeys([*served_refs, *(f"{v}:{f}" for v, f in checked)]))
        seconds = settings.service_timeout_seconds()
        self.online, self.offline = _online_store(store, seconds), _offline_store(seconds)
        # After _online_store: the reader's Redis client is Feast's, created with the socket timeouts set there.
        self.reader = OnlineReader(store, self.refs)
        self.online.probe = lambda: self.reader.read_many(["__READY__"])
        self.offline.probe = _select_one
        self.log = None if log is None else prediction_log(log, model, served)
        if log == "predict":
            self.log.bound = self.offline.call  # one row, bounded like predict's every PostgreSQL call

    def refuse_if_suspect(self) -> None:
        """503 at once when a store was found silent and has not answered since: a request checks first."""
        self.online.refuse_if_suspect()
        self.offline.refuse_if_suspect()

    def read(self, symbol: str, probe: bool = False) -> dict[str, Any]:
        """The service's online features of one symbol and each view's bar (None when the symbol is not online)."""
        return self.read_many([symbol], probe)[0]

    def read_many(self, symbols: list[str], probe: bool = False) -> list[dict[str, Any]]:
        """:meth:`read` of many symbols in one online call, in their order (``probe``: see :meth:`Store.call`)."""
        return self.online.call(self.reader.read_many, symbols, probe=probe)

    def ready(self) -> dict[str, str]:
        """One read from each store, bounded like every other call but tried even when a store was found silent,
        so a store that recovered is seen at once: {service: where} when both answer."""
        self.read("__READY__", probe=True)
        self.offline.call(_select_one, probe=True)
        return {self.online.service: self.online.where, self.offline.service: self.offline.where}

    def score(self, row: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        """predict_proba on one row, columns in the signature's order."""
        return self.score_many([row])[0]

    def score_many(self, rows: list[dict[str, Any]]) -> list[tuple[Any, dict[str, float]]]:
        """:meth:`score` of many rows in one predict_proba call."""
        if not rows:
            return []
        return class_probabilities(self.model, feature_frame(rows, self.model.inputs))

    def check(self, symbol: str, row: dict[str, Any], reference: datetime, what: str) -> None:
        """Refuse a row :meth:`predict` would refuse: views of different bars or of two versions of one bar,
        stale at ``reference``, unusable."""
        bar = row[AUDIT_FEATURE]
        check_views_agree(
            symbol,
            {view: row.get(field) for view, field in self.bar_fields.items()},
            {view: row.get(field) for view, field in self.version_fields.items()},
        )
        _check_fresh(symbol, bar, reference, what, self.ttl)
        _check_usable(symbol, bar, {name: row[name] for name in self.model.inputs})

    def predict(self, symbol: str, as_of: datetime | None = None) -> Prediction:
        symbol = normalise_symbol(symbol)
        if not symbol:
            raise InputError("no symbol given")
        row = self.read(symbol)
        bar = row.get(AUDIT_FEATURE)
        if bar is None:
            known = self.offline.call(known_symbols)
            if symbol in known:
                raise SymbolNotServed(f"no online features for {symbol}: run `{MATERIALIZE}` to load its newest bar")
            raise SymbolNotServed(
                f"unknown symbol {symbol}: neither the online nor the offline store has it; "
                + describe_known(known, [symbol])
            )
        notes: list[str] = []
        if as_of is not None:
            reference, what = as_of, "--as-of"
        else:
            reference, what = self.offline.call(newest_offline_bar, symbol) or bar, "newest offline bar"
            if reference > bar:
                notes.append(f"the offline store has a newer bar of {symbol} ({reference}): run `{MATERIALIZE}`")
        self.check(symbol, row, reference, what)
        features = {name: row[name] for name in self.model.inputs}
        predicted, by_class = self.score(row)
        probability = reported_probability(predicted, by_class)
        if self.log is not None:
            self.log.record([self.log.entry(symbol, row, probability, request_time())])
        return Prediction(
            symbol=symbol,
            probability=probability,
            predicted_class=predicted,
            probabilities=by_class,
            bar_timestamp=bar,
            reference_time=reference,
            reference=what,
            ttl=self.ttl,
            model=self.model.label,
            feature_service=self.model.feature_service,
            features=features,
            notes=notes,
        )


def prediction_log(source: str, model: LoadedModel, served: list[str]) -> PredictionLog:
    """The log of ``source``'s scored rows: ``serve`` buffers off the request path, the others write at once."""
    kind = BufferedLog if source == "serve" else PredictionLog
    return kind(source, model.uri, model.feature_service, served)


def class_probabilities(model: LoadedModel, inputs: pd.DataFrame) -> list[tuple[Any, dict[str, float]]]:
    """(predicted class, {class: probability}) of each row of ``inputs`` (the model's inputs), one predict_proba."""
    if inputs.empty:
        return []
    probabilities = model.estimator.predict_proba(inputs[model.inputs].astype("float64"))
    classes = [_plain(c) for c in model.estimator.classes_]
    return [
        (classes[int(p.argmax())], {str(c): float(v) for c, v in zip(classes, p, strict=True)}) for p in probabilities
    ]


def _source_views(store: FeatureStore, service) -> set[str]:
    """The feature views the service reads, directly or through on-demand views."""
    views = {view.name for view in store.list_feature_views()}
    names = set()
    for projection in service.feature_view_projections:
        if projection.name in views:
            names.add(projection.name)
        else:
            odfv = store.get_on_demand_feature_view(projection.name)
            names.update(p.name for p in odfv.source_feature_view_projections.values())
    return names


def _service_ttl(store: FeatureStore, service) -> timedelta | None:
    """The smallest TTL of the feature views the service reads, directly or through on-demand views."""
    views = {view.name: view for view in store.list_feature_views()}
    ttls = [views[name].ttl for name in _source_views(store, service) if name in views and views[name].ttl]
    return min(ttls) if ttls else None


def _online_store(store: FeatureStore, seconds: float) -> Store:
    """The online store as a bounded :class:`Store`. Feast's Redis client gets socket timeouts and no retries
    (redis-py would retry a timed-out read three times with backoff), so it bounds every call by itself."""
    config = store.config.online_store
    redis = settings.redis()
    if getattr(config, "type", "") != "redis" or redis is None:
        return Store("SQLite online store", "the SQLite online store", "REDIS_URL (unset: SQLite)", seconds)
    if "socket_timeout" not in config.connection_string:  # before Feast creates its client on the first read
        # Feast reads each value as JSON: retry=null is None, which redis-py takes as "no retries".
        config.connection_string += f",socket_timeout={seconds},socket_connect_timeout={seconds},retry=null"
    return Store("Redis", redis.describe(), "REDIS_URL", seconds, self_bounded=True)


def _offline_store(seconds: float) -> Store:
    pg = settings.postgres()
    hint = "PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE/PGSSLMODE"
    return Store("PostgreSQL", pg.describe(), hint, seconds)


def _select_one() -> None:
    with db.connect() as conn:
        conn.execute("SELECT 1").fetchone()


def _views_by_value(values: dict[str, str]) -> str | None:
    """None when every view holds the same value, else "views: value; ..." naming each group."""
    groups: dict[str, list[str]] = {}
    for view, value in values.items():
        groups.setdefault(value, []).append(view)
    if len(groups) < 2:
        return None
    return "; ".join(f"{', '.join(views)}: {value}" for value, views in sorted(groups.items()))


def check_views_agree(symbol: str, bars: dict[str, Any], versions: dict[str, Any]) -> None:
    """Refuse a row whose views describe different bars, or different versions of one bar ({view: value})."""
    _check_one_bar(symbol, bars)
    _check_one_version(symbol, next(iter(bars.values()), None), versions)


def _check_one_bar(symbol: str, bars: dict[str, Any]) -> None:
    """Refuse a row whose views describe different bars (or some none): a materialize stopped between views."""
    described = _views_by_value({view: "nothing" if bar is None else str(bar) for view, bar in bars.items()})
    if described:
        raise MixedBars(
            f"online features of {symbol} mix bars across feature views ({described}); a materialize was "
            f"interrupted between views: run `{MATERIALIZE}`"
        )


def _check_one_version(symbol: str, bar: Any, versions: dict[str, Any]) -> None:
    """Refuse a row whose views hold different versions of its bar (or some none): a correction of the bar
    materialized into some views only. A version is the row's created_timestamp in microseconds."""
    described = _views_by_value({view: describe_version(version) for view, version in versions.items()})
    if described:
        raise MixedVersions(
            f"online features of {symbol} mix versions of the bar of {bar} across feature views (written "
            f"{described}); a materialize was interrupted between views: run `{MATERIALIZE}`"
        )


def describe_version(version: Any) -> str:
    """A row version as the time its row was computed (UTC, to the microsecond), or "nothing"; the number itself
    when it is no time Python can show."""
    if version is None:
        return "nothing"
    try:
        return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(version))).isoformat()
    except OverflowError:
        return f"version {version}"


def unusable_inputs(features: dict[str, Any]) -> list[str]:
    """Inputs without a finite value (None, NaN, ±inf): training dropped such rows, so serving refuses them."""
    return [name for name, value in features.items() if value is None or not math.isfinite(float(value))]


def _check_usable(symbol: str, bar: datetime, features: dict[str, Any]) -> None:
    """Refuse, naming the inputs, a row the model never saw the like of in training."""
    from training.indicators.definitions import warmup_bars

    unusable = unusable_inputs(features)
    if unusable:
        raise UnusableFeatures(
            f"cannot score {symbol}: the bar of {bar} has no finite value for {len(unusable)} of {len(features)} "
            f"model inputs ({', '.join(unusable)}); they are undefined within the {warmup_bars()}-bar warm-up "
            "of a short history, and the volume forms on or after a zero-volume bar"
        )


def _check_fresh(symbol: str, bar: datetime, reference: datetime, what: str, ttl: timedelta | None) -> None:
    """Refuse features from after the reference time, or older than the TTL before it."""
    if bar > reference:
        raise StaleFeatures(
            f"online features of {symbol} describe the bar of {bar}, after {what} {reference}: the online store "
            "holds only the newest bar (use build-dataset for point-in-time features of past dates)"
        )
    if ttl is not None and reference - bar > ttl:
        raise StaleFeatures(
            f"online features of {symbol} are stale: bar of {bar} is {reference - bar} older than {what} "
            f"{reference}, beyond the feature views' TTL of {ttl} (run `{COMPUTE_FEATURES}` and "
            f"`{MATERIALIZE}` after new bars arrive)"
        )


def parse_as_of(text: str, exchange_tz: str = DEFAULT_EXCHANGE_TZ) -> datetime:
    """A timestamp; naive ones are in the exchange's time zone, a bare date means the end of that day there.

    The end of the day, not a session-close time: bars may be stamped at any close (``ingest
    --session-close``), and every close of date D lies within D, so "as of D" sees D's bar whatever its stamp.
    """
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise InputError(f"--as-of {text!r} is not a date or timestamp (e.g. 2013-03-04 or 2013-03-04T16:00)") from None
    if stamp is pd.NaT:
        raise InputError(f"--as-of {text!r} is not a date or timestamp")
    if len(text.strip()) == 10 and stamp.tzinfo is None:
        stamp = stamp + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)  # the last instant of that date
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(exchange_tz)
    return stamp.tz_convert("UTC").to_pydatetime()


def feature_frame(rows: list[dict[str, Any]], inputs: list[str]) -> pd.DataFrame:
    """Rows as the model's input frame (signature order, float64)."""
    import pandas as pd

    return pd.DataFrame([[r[name] for name in inputs] for r in rows], columns=inputs, dtype="float64")
