"""The audit's own reader of the stored bars: its own SQL on PostgreSQL, its own Parquet read on the lake.

It shares no code with the builder's readers (``training.dataset.offline_bars``, ``training.engines``): a bug
there feeds the builder wrong bars, and the audit, reading what is stored its own way, sees rows that do not
match. Adjusted prices are ``COALESCE(adj_*, raw)``, as the SPEC defines them, computed here (in the query on
PostgreSQL, with Arrow on the lake). Each call returns one partition's symbols, sorted by (symbol, time), with
``event_timestamp`` tz-aware UTC: what :class:`training.leakage.panel.BarHistory` indexes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

import pandas as pd

from training.errors import InputError
from training.infra import db, environment
from training.infra.adjustments import bars_known_at, has_events
from training.infra.schema import OHLCV_TABLE
from training.infra.versions import has_history

PRICES = ("open", "high", "low", "close", "volume")
BarReader = Callable[[Sequence[str]], pd.DataFrame]

# Microseconds since the epoch as an integer: no text timestamp to parse, no time zone to trust.
_QUERY = """
COPY (
    SELECT symbol, (extract(epoch FROM event_timestamp) * 1000000)::bigint AS event_us, {prices}
    FROM {table} AS b
    WHERE symbol = ANY({symbols})
    ORDER BY symbol, event_timestamp
) TO STDOUT (FORMAT csv, HEADER true)
"""
# Symbols with no bar at all (an index probe each).
_ABSENT = (
    "SELECT s FROM unnest(%s::text[]) AS s WHERE NOT EXISTS (SELECT 1 FROM {table} AS b WHERE b.symbol = s) ORDER BY 1"
)


def _frame(symbols: list[str], stamps_us, prices: dict) -> pd.DataFrame:
    stamps = pd.to_datetime(stamps_us, unit="us", utc=True).astype("datetime64[ns, UTC]")
    frame = pd.DataFrame({"symbol": symbols, "event_timestamp": stamps, **prices})
    return frame.sort_values(["symbol", "event_timestamp"], kind="stable").reset_index(drop=True)


def _table(known_at: str | None, history: bool, events: bool):
    """What the audit reads: the bars table, or its versions known at ``known_at`` (ISO 8601), re-adjustments
    known later undone (the one derivation of :mod:`training.infra.adjustments`)."""
    from datetime import datetime

    from psycopg import sql

    schema, table = OHLCV_TABLE.split(".")
    if known_at is None:
        return sql.Identifier(schema, table)
    columns = ("symbol", "event_timestamp", *(c for p in PRICES for c in (p, f"adj_{p}")))
    return sql.SQL(bars_known_at(OHLCV_TABLE, columns, datetime.fromisoformat(known_at), history, events))


def read_postgres(
    conn, symbols: Sequence[str], known_at: str | None = None, history: bool = True, events: bool = True
) -> pd.DataFrame:
    """The adjusted bars of ``symbols`` from PostgreSQL (as known at ``known_at``, when given), one COPY of the
    audit's own query."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    from psycopg import sql

    prices = sql.SQL(", ").join(
        sql.SQL("COALESCE({adj}, {raw})::float8 AS {raw}").format(adj=sql.Identifier(f"adj_{c}"), raw=sql.Identifier(c))
        for c in PRICES
    )
    # COPY takes no bind parameters: the symbols go in as one quoted array literal.
    wanted = sql.Literal(list(symbols))
    query = sql.SQL(_QUERY).format(prices=prices, table=_table(known_at, history, events), symbols=wanted)
    buffer = io.BytesIO()
    with conn.cursor() as cur, cur.copy(query) as copy:
        for block in copy:
            buffer.write(block)
    types = {"symbol": pa.string(), "event_us": pa.int64(), **dict.fromkeys(PRICES, pa.float64())}
    rows = pa_csv.read_csv(pa.py_buffer(buffer.getbuffer()), convert_options=pa_csv.ConvertOptions(column_types=types))
    return _frame(rows["symbol"].to_pylist(), rows["event_us"].to_numpy(), {c: rows[c].to_numpy() for c in PRICES})


def read_lake(root: str, symbols: Sequence[str], known_at: str | None = None) -> pd.DataFrame:
    """The adjusted bars of ``symbols`` from the lake's bars table (Parquet under ``root``/bars, hive-partitioned
    by bucket), read with Arrow: no Spark. As known at ``known_at``: the table's rows created by then and the
    versions in ``root``/bars_history still current then, one of each (a stopped write may leave one twice)."""
    import pyarrow.compute as pc

    wanted = ["symbol", "event_timestamp", "created_timestamp", *PRICES, *(f"adj_{c}" for c in PRICES)]
    table = _lake_table(f"{root}/bars", wanted, symbols)
    if table is None:
        raise InputError(f"the lake has no bars table at {root}/bars: run ingest with OHLCV_ENGINE=spark")
    if known_at is not None:
        table = _as_known(root, table, wanted, symbols, known_at)
    stamps = _micros(table["event_timestamp"]).to_numpy()  # Spark stores UTC instants
    prices = {c: pc.coalesce(table[f"adj_{c}"], table[c]).cast("float64").to_numpy() for c in PRICES}
    return _frame(table["symbol"].to_pylist(), stamps, prices)


def _as_known(root: str, table, wanted: list[str], symbols: Sequence[str], known_at: str):
    """The bars' rows created by ``known_at`` and the history's versions still current then, each once."""
    from datetime import datetime

    import pyarrow as pa
    import pyarrow.compute as pc

    at = _micros(pa.array([datetime.fromisoformat(known_at)], pa.timestamp("us", tz="UTC")))[0]
    tables = [table.filter(pc.less_equal(_micros(table["created_timestamp"]), at))]
    history = _lake_table(f"{root}/bars_history", [*wanted, "superseded_timestamp"], symbols)
    if history is not None:
        created, superseded = _micros(history["created_timestamp"]), _micros(history["superseded_timestamp"])
        still = pc.and_(pc.less_equal(created, at), pc.greater(superseded, at))
        tables.append(history.filter(still).select(wanted))
    return pa.concat_tables(tables).group_by(wanted).aggregate([])


def _lake_table(uri: str, columns: list[str], symbols: Sequence[str]):
    """The rows of ``symbols`` in the lake's Parquet dataset ``uri`` (None when there is none)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    try:
        found = ds.dataset(uri.replace("s3a://", "s3://", 1), format="parquet", partitioning="hive")
    except (FileNotFoundError, OSError):
        return None
    return found.to_table(columns=columns, filter=pc.field("symbol").isin(list(symbols)))


def _micros(values):
    """Timestamps as int64 microseconds since 1970 (UTC)."""
    import pyarrow as pa

    return values.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())


def bar_reader(symbols: Sequence[str], known_at: str | None = None) -> AbstractContextManager[BarReader]:
    """A reader of the stored adjusted bars, from where OHLCV_ENGINE keeps them, as known at ``known_at`` (the
    dataset's build, ISO 8601; None: the newest); refuses ``symbols`` (the dataset's) the store no longer has.
    Chosen here by the setting's name, not through training.engines: the audit shares no code with what builds
    the dataset."""
    return _READERS[environment.engine()](symbols, known_at)


@contextmanager
def _lake_reader(symbols: Sequence[str], known_at: str | None) -> Iterator[BarReader]:
    root = environment.lake_uri()
    yield lambda wanted: _refuse_missing(read_lake(root, wanted, known_at), wanted)


@contextmanager
def _postgres_reader(symbols: Sequence[str], known_at: str | None) -> Iterator[BarReader]:
    with db.connect(autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (OHLCV_TABLE,)).fetchone()[0] is None:
            raise InputError(f"{OHLCV_TABLE} does not exist: the dataset's bars are gone; ingest and rebuild")
        absent = [row[0] for row in conn.execute(_ABSENT.format(table=OHLCV_TABLE), (list(symbols),))]
        _refuse(absent)
        history, events = has_history(conn, OHLCV_TABLE), has_events(conn)
        yield lambda wanted: _refuse_missing(read_postgres(conn, wanted, known_at, history, events), wanted)


_READERS: dict[str, Callable[[Sequence[str], str | None], AbstractContextManager[BarReader]]] = {
    "postgres": _postgres_reader,
    "spark": _lake_reader,
}


def _refuse_missing(bars: pd.DataFrame, wanted: Sequence[str]) -> pd.DataFrame:
    _refuse(sorted(set(wanted) - set(bars["symbol"].unique())))
    return bars


def _refuse(missing: list[str]) -> None:
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"the offline store has no bars of {shown}, which the dataset holds: it was rebuilt or "
                         "emptied since the build; rebuild the dataset")  # fmt: skip


# When each symbol's view of its bars changed, and from which bar on: a version written (created) or replaced
# (superseded), or an adjustment event recorded (it restates its first bar onwards), each known by ``known_at``.
_CHANGES = """
SELECT symbol, (extract(epoch FROM changed) * 1000000)::bigint, (extract(epoch FROM min(first)) * 1000000)::bigint
FROM (
    SELECT symbol, event_timestamp AS first, created_timestamp AS changed FROM {table}
    WHERE symbol = ANY(%(s)s) AND created_timestamp <= %(at)s
    {history}
    {events}
) AS c
GROUP BY symbol, changed ORDER BY symbol, changed
"""
_HISTORY_CHANGES = """
    UNION ALL SELECT symbol, event_timestamp, created_timestamp FROM {history}
    WHERE symbol = ANY(%(s)s) AND created_timestamp <= %(at)s
    UNION ALL SELECT symbol, event_timestamp, {superseded} FROM {history}
    WHERE symbol = ANY(%(s)s) AND {superseded} <= %(at)s
"""
_EVENT_CHANGES = """
    UNION ALL SELECT symbol, first_timestamp, created_timestamp FROM {events}
    WHERE symbol = ANY(%(s)s) AND created_timestamp <= %(at)s
"""


def read_changes(symbols: Sequence[str], known_at: str | None) -> pd.DataFrame:
    """Every time (``changed``, int64 ns) a symbol's stored bars changed, as known at ``known_at`` (None: now),
    with the oldest bar (``first``, int64 ns) the change touched: bars as known at any time T are the bars as
    known at the newest change at or before T, and a bar older than ``first`` is the same on both sides of it.
    On the lake: none read yet. The lake's decision-time join reads every feature version, but the audit's
    decision_time check refuses a lake decision-time dataset (no reader of the lake's versions), so the audit
    fails before these rows could be trusted; a lake reader of the bars' changes belongs with that one."""
    return _CHANGE_READERS[environment.engine()](symbols, known_at)


def _lake_changes(symbols: Sequence[str], known_at: str | None) -> pd.DataFrame:
    return pd.DataFrame({"symbol": pd.Series([], dtype=str), "changed": pd.Series([], dtype="int64"),
                         "first": pd.Series([], dtype="int64")})  # fmt: skip


def _postgres_changes(symbols: Sequence[str], known_at: str | None) -> pd.DataFrame:
    from datetime import datetime

    from training.infra.adjustments import ADJUSTMENTS_TABLE
    from training.infra.versions import SUPERSEDED, history_table

    at = datetime.fromisoformat(known_at) if known_at else None
    with db.connect(autocommit=True) as conn:
        history = _HISTORY_CHANGES.format(history=history_table(OHLCV_TABLE), superseded=SUPERSEDED)
        query = _CHANGES.format(
            table=OHLCV_TABLE,
            history=history if has_history(conn, OHLCV_TABLE) else "",
            events=_EVENT_CHANGES.format(events=ADJUSTMENTS_TABLE) if has_events(conn) else "",
        )
        query = query.replace("%(at)s", "COALESCE(%(at)s::timestamptz, 'infinity')")
        rows = conn.execute(query, {"s": list(symbols), "at": at}).fetchall()
    frame = pd.DataFrame(rows, columns=["symbol", "changed", "first"])
    for column in ("changed", "first"):
        frame[column] = frame[column].astype("int64") * 1000
    return frame


def read_bars_at(symbols: Sequence[str], known_at: str) -> pd.DataFrame:
    """The adjusted bars of ``symbols`` as known at ``known_at`` (ISO 8601), by the audit's own query: an
    earlier knowledge epoch than the dataset's build (a decision-time row's). PostgreSQL only (see
    :func:`read_changes`: on the lake no row asks)."""
    with db.connect(autocommit=True) as conn:
        return read_postgres(conn, symbols, known_at, has_history(conn, OHLCV_TABLE), has_events(conn))


_CHANGE_READERS: dict[str, Callable[[Sequence[str], str | None], pd.DataFrame]] = {
    "postgres": _postgres_changes,
    "spark": _lake_changes,
}
