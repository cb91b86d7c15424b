"""The online side: what materialize writes over, and whether the online store serves the newest offline rows."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from training.contract import AUDIT_FEATURE, COMPUTE_FEATURES, FEAST_APPLY, normalise_symbols
from training.dataset.offline_bars import unknown_symbols_error
from training.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore


def registered_views(store: FeatureStore) -> list[str]:
    """Names of the project's feature views, or one line saying to apply the repository first."""
    names = [view.name for view in store.list_feature_views()]
    if not names:
        raise InputError(f"Feast project {store.project!r} has no feature views: run `{FEAST_APPLY}` first")
    return names


def ensure_online_tables(store: FeatureStore) -> None:
    """Create the online store's table of every registered view that lacks one (Feast's own infra update).

    `feast apply` creates them, but a SQLite online file moved or deleted afterwards (or an online store
    pointed elsewhere) has none, and Feast's reads and writes then fail with "no such table". Creating is
    idempotent and deletes nothing; on Redis it is a no-op (keys need no table).
    """
    views = store.list_feature_views()
    if views:
        store._get_provider().update_infra(
            project=store.project,
            tables_to_delete=[],
            tables_to_keep=views,
            entities_to_delete=[],
            entities_to_keep=store.list_entities(),
            partial=True,
        )


@contextmanager
def overwriting(store: FeatureStore) -> Iterator[None]:
    """Let this materialize overwrite rows whose event time is not newer than the stored one.

    Feast's Redis store skips such writes, so a bar corrected in place (same stamp, new values) would keep
    its old values online forever. The window always ends at the newest offline bar and Feast pulls the
    newest row of each symbol, so what is written is exactly the newest offline row: overwriting is safe.
    (SQLite's store always overwrites.)
    """
    config = store.config.online_store
    if not hasattr(config, "skip_dedup"):
        yield
        return
    before = config.skip_dedup
    config.skip_dedup = True
    try:
        yield
    finally:
        config.skip_dedup = before


# --- online/offline consistency -------------------------------------------------------------------

SCALE_FREE_VIEW = "scale_free_indicators"
REL_TOLERANCE = 1e-12


@dataclass
class SymbolCheck:
    """One symbol's comparison: the newest offline row against what the online store serves."""

    symbol: str
    offline_bar: datetime
    online_bar: datetime | None = None
    checked: int = 0  # 0: nothing online for this symbol at all
    mismatches: list[tuple[str, Any, Any]] = field(default_factory=list)  # (view:feature, online, offline)
    mixed: str | None = None  # how the views disagree with each other on the bar or its version (predict refuses)

    @property
    def missing(self) -> bool:
        return self.checked == 0

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatches


def offline_symbols() -> list[str]:
    """Symbols that have feature rows, or a clear error when the feature table is empty or absent."""
    from training.engines import current_engine

    engine = current_engine()
    symbols = engine.feature_symbols()
    if not symbols:
        raise InputError(f"{engine.features_table()} is empty: run `{COMPUTE_FEATURES}` first")
    return symbols


def resolve_symbols(symbols: list[str] | None) -> list[str]:
    """Upper-cased, de-duplicated symbols, all known offline; every symbol with features when None."""
    known = offline_symbols()
    if not symbols:
        return known
    wanted = sorted(normalise_symbols(symbols))
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise unknown_symbols_error(unknown, known)
    return wanted


def latest_offline_rows(symbols: list[str]) -> pd.DataFrame:
    """The newest feature row of each symbol: exactly what materialize loads into the online store."""
    from training.engines import current_engine

    return current_engine().latest_feature_rows(symbols).set_index("symbol", drop=False)


def same_value(online: Any, offline: Any) -> bool:
    """Equal, or within REL_TOLERANCE relative; missing values (None, NaN) equal each other only."""
    if _missing(online) or _missing(offline):
        return _missing(online) and _missing(offline)
    if isinstance(online, datetime) or isinstance(offline, datetime):
        import pandas as pd

        return pd.Timestamp(online) == pd.Timestamp(offline)
    a, b = float(online), float(offline)
    return a == b or abs(a - b) <= REL_TOLERANCE * max(abs(a), abs(b))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def check_online(store: FeatureStore, symbols: list[str] | None = None) -> list[SymbolCheck]:
    """Compare every family-view feature and every scale-free form online with the newest offline row.

    The scale-free forms are recomputed from the offline row with the function the on-demand view runs,
    so a difference means the online store holds other inputs than the offline table, not other maths.
    """
    from training.indicators.scale_free import scale_free_forms

    registered_views(store)  # before apply, Feast would raise "No features specified for retrieval"
    ensure_online_tables(store)
    symbols = resolve_symbols(symbols)
    offline = latest_offline_rows(symbols)
    derived = scale_free_forms({column: offline[column].tolist() for column in offline.columns})
    position = {symbol: i for i, symbol in enumerate(offline["symbol"])}
    views = {view.name: [f.name for f in view.features] for view in store.list_feature_views()}
    odfv = {view.name: [f.name for f in view.features] for view in store.list_on_demand_feature_views()}
    refs = [f"{name}:{feature}" for name, features in views.items() for feature in features]
    refs += [f"{SCALE_FREE_VIEW}:{feature}" for feature in odfv.get(SCALE_FREE_VIEW, [])]
    names = [ref.split(":")[1] for ref in refs]
    if len(set(names)) != len(names):
        raise InputError(f"feature names repeat across views ({', '.join(sorted(refs))}); rename them in feature_repo/")
    # Feature names are unique across the views; Feast drops python-mode on-demand outputs when asked
    # for full (view-prefixed) names, so the short names are requested and mapped back to their views.
    online = store.get_online_features(features=refs, entity_rows=[{"symbol": s} for s in symbols]).to_dict()

    checks = []
    for row, symbol in enumerate(symbols):
        served = {ref: online[ref.split(":")[1]][row] for ref in refs}
        check = SymbolCheck(symbol, offline.loc[symbol, "event_timestamp"])
        check.online_bar = next((v for r, v in served.items() if r.endswith(f":{AUDIT_FEATURE}") and v), None)
        checks.append(check)
        if all(_missing(v) for r, v in served.items() if not r.startswith(f"{SCALE_FREE_VIEW}:")):
            continue  # nothing online for this symbol: reported as missing, not feature by feature
        check.mixed = _views_disagree(symbol, served)
        for ref, value in served.items():
            view, feature = ref.split(":")
            expected = derived[feature][position[symbol]] if view == SCALE_FREE_VIEW else offline.loc[symbol, feature]
            check.checked += 1
            if not same_value(value, expected):
                check.mismatches.append((ref, value, expected))
    return checks


def _views_disagree(symbol: str, served: dict[str, Any]) -> str | None:
    """predict's refusal of a row whose views describe different bars or versions, or None when they agree."""
    from training.errors import ProjectError
    from training.indicators.feature_table import VIEW_BAR_FIELDS, VIEW_VERSION_FIELDS
    from training.serving.scorer import check_views_agree

    def per_view(fields: dict[str, str]) -> dict[str, Any]:
        return {view: served[f"{view}:{name}"] for view, name in fields.items() if f"{view}:{name}" in served}

    try:
        check_views_agree(symbol, per_view(VIEW_BAR_FIELDS), per_view(VIEW_VERSION_FIELDS))
    except ProjectError as refused:
        return str(refused)
    return None
