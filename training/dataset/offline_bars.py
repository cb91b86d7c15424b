"""Read the adjusted bars a dataset is built from, and refuse requests the offline store cannot answer."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import date

import pandas as pd

from training.contract import COMPUTE_FEATURES, INGEST, normalise_symbols
from training.errors import NAMED, InputError, name_some
from training.indicators.feature_table import FEATURE_ROW_COLUMNS, FEATURES_TABLE
from training.infra import adjustments, db
from training.infra.schema import ADJUSTED_BAR_COLUMNS, OHLCV_TABLE, OHLCV_VERSION_COLUMNS
from training.infra.versions import relation

# Indicators and labels are computed on split/dividend-adjusted prices where the input had them.
_ADJUSTED_BARS = """
SELECT symbol, event_timestamp, trade_date, {adjusted}
FROM {bars} AS b
WHERE (%(symbols)s::text[] IS NULL OR symbol = ANY(%(symbols)s::text[]))
ORDER BY symbol, event_timestamp
"""


# Requested symbols without a single feature row (an index probe each, not a scan of the table).
_WITHOUT_FEATURES = """
SELECT s FROM unnest(%s::text[]) AS s
WHERE NOT EXISTS (SELECT 1 FROM {features} AS f WHERE f.symbol = s)
ORDER BY 1
"""
# Bars with no feature row at their own stamp: new bars (or re-stamped ones) that compute-features has not
# seen yet. Feast would join such a decision to the previous bar's features within the TTL, silently.
_BARS_WITHOUT_FEATURE_ROW = """
SELECT b.symbol, count(*), min(b.trade_date)
FROM {bars} AS b
WHERE b.symbol = ANY(%s::text[])
  AND NOT EXISTS (
      SELECT 1 FROM {features} AS f WHERE f.symbol = b.symbol AND f.event_timestamp = b.event_timestamp
  )
GROUP BY b.symbol ORDER BY b.symbol
"""


def bars_relation(conn) -> str:
    """The bars table, or its rows as known at the enclosing :func:`training.infra.versions.knowing` time
    (re-adjustments undone as :mod:`training.infra.adjustments` derives them)."""
    return adjustments.bars_relation(OHLCV_TABLE, (*OHLCV_VERSION_COLUMNS, "created_timestamp"), conn)


def features_relation(conn) -> str:
    """The features table, or its rows as known at the enclosing knowledge time."""
    return relation(FEATURES_TABLE, FEATURE_ROW_COLUMNS, conn)


def describe_known(known: Sequence[str], wanted: Sequence[str] = ()) -> str:
    """What the offline store has, in a few names: the closest to ``wanted`` first, and how many in all."""
    if not known:
        return "the offline store has no symbols"
    if len(known) <= NAMED:
        return f"the offline store has: {', '.join(known)}"
    close: list[str] = []
    for name in wanted[:NAMED]:
        close += [c for c in difflib.get_close_matches(name, known, n=NAMED) if c not in close]
    if close:
        return f"the offline store has {len(known):,} symbols; closest: {', '.join(close[:NAMED])}"
    return f"the offline store has {len(known):,} symbols, e.g. {', '.join(known[:NAMED])}"


def unknown_symbols_error(unknown: Sequence[str], known: Sequence[str]) -> InputError:
    """The one message for symbols the offline store does not have, whichever command was given them."""
    return InputError(f"unknown symbol(s): {name_some(unknown)}; {describe_known(known, unknown)}")


def require_features(symbols: Sequence[str]) -> None:
    """Refuse before Feast reads the feature table when compute-features has not run (for these symbols).

    Feast would otherwise fail deep in its SQL with ``UndefinedTable``, or join nothing for a symbol
    whose features were never computed, and the build would drop that symbol without a word.
    """
    with db.connect() as conn:
        if conn.execute("SELECT to_regclass(%s)", (FEATURES_TABLE,)).fetchone()[0] is None:
            raise InputError(f"{FEATURES_TABLE} does not exist: run `{COMPUTE_FEATURES}` first")
        features = features_relation(conn)
        missing = [row[0] for row in conn.execute(_WITHOUT_FEATURES.format(features=features), (list(symbols),))]
        behind: list[tuple[str, int, object]] = []
        if not missing:
            query = _BARS_WITHOUT_FEATURE_ROW.format(bars=bars_relation(conn), features=features)
            behind = conn.execute(query, (list(symbols),)).fetchall()
    if missing:
        raise missing_features_error(missing, FEATURES_TABLE)
    if behind:
        raise features_behind_error(behind)


def missing_features_error(missing: Sequence[str], table: str) -> InputError:
    return InputError(
        f"no features for {len(missing):,} symbol(s) ({name_some(missing)}) in {table}: run `{COMPUTE_FEATURES}` first"
    )


def features_behind_error(behind: Sequence[tuple[str, int, object]]) -> InputError:
    """Bars (symbol, count, first trade date) that have no feature row at their own stamp yet."""
    bars = sum(count for _, count, _ in behind)
    first = name_some([f"{symbol} from {since}" for symbol, _, since in behind])
    return InputError(
        f"{bars:,} bar(s) of {len(behind):,} symbol(s) have no feature row yet ({first}): run `{COMPUTE_FEATURES}`"
    )


def known_symbols() -> list[str]:
    with db.connect() as conn:
        bars = bars_relation(conn)
        if bars == OHLCV_TABLE:
            return db.table_symbols(conn, OHLCV_TABLE)
        return [row[0] for row in conn.execute(f"SELECT symbol FROM {bars} AS b GROUP BY symbol ORDER BY symbol")]


def checked_symbols(symbols: list[str] | None) -> list[str] | None:
    """``symbols`` normalised and sorted (None: every symbol), refused when unknown or when there are no bars."""
    return checked_against(symbols, known_symbols(), f"{OHLCV_TABLE} is empty: run `{INGEST}` first")


def checked_against(symbols: Sequence[str] | None, known: Sequence[str], empty: str) -> list[str] | None:
    """``symbols`` normalised and sorted (None: every symbol), refused when not among ``known`` (sorted), or with
    the message ``empty`` when the offline store has no symbol at all; both profiles' readers check with it."""
    if not known:
        raise InputError(empty)
    if symbols is None:
        return None
    wanted = sorted(normalise_symbols(symbols))
    present = set(known)
    unknown = [s for s in wanted if s not in present]
    if unknown:
        raise unknown_symbols_error(unknown, known)
    if not wanted:
        raise InputError("no symbols given")
    return wanted


def read_bars(conn, symbols: Sequence[str] | None) -> pd.DataFrame:
    """The adjusted bars of ``symbols`` (all when None) as stored, sorted by (symbol, event_timestamp)."""
    query = _ADJUSTED_BARS.format(adjusted=ADJUSTED_BAR_COLUMNS, bars=bars_relation(conn))
    bars = db.copy_out(conn, query, {"symbols": symbols}, parse_dates=["event_timestamp"])
    bars["trade_date"] = pd.to_datetime(bars["trade_date"]).dt.date
    return bars


def load_bars(symbols: list[str] | None = None) -> pd.DataFrame:
    """Every adjusted bar of ``symbols`` (all symbols when None), sorted by (symbol, event_timestamp)."""
    symbols = checked_symbols(symbols)
    with db.connect() as conn:
        return read_bars(conn, symbols)


def check_range(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and start > end:
        raise InputError(f"empty date range: start {start} is after end {end}")


def decision_mask(bars: pd.DataFrame, start: date | None, end: date | None) -> pd.Series:
    """Bars whose trading date lies in [start, end]: the decisions a dataset may contain (none is no error:
    one partition of a universe may have none; :func:`no_bars_in_range` is the error for all of them)."""
    check_range(start, end)
    mask = pd.Series(True, index=bars.index)
    if start is not None:
        mask &= bars["trade_date"] >= start
    if end is not None:
        mask &= bars["trade_date"] <= end
    return mask


def no_bars_in_range(start: date | None, end: date | None, first: date, last: date) -> InputError:
    span = f"data spans {first} .. {last}"
    return InputError(f"no bars between {start or 'the first bar'} and {end or 'the last bar'} ({span})")
