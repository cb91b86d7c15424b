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


def read_lake(root: str, symbols: Sequence[str]) -> pd.DataFrame:
    """The adjusted bars of ``symbols`` from the lake's bars table (Parquet under ``root``/bars, hive-partitioned
    by bucket), read with Arrow: no Spark."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    uri = f"{root}/bars".replace("s3a://", "s3://", 1)
    try:
        bars = ds.dataset(uri, format="parquet", partitioning="hive")
    except (FileNotFoundError, OSError) as error:
        raise InputError(f"the lake has no bars table at {uri} ({error}): run ingest with OHLCV_ENGINE=spark") from None
    wanted = ["symbol", "event_timestamp", *PRICES, *(f"adj_{c}" for c in PRICES)]
    table = bars.to_table(columns=wanted, filter=pc.field("symbol").isin(list(symbols)))
    stamps = table["event_timestamp"].cast("timestamp[us]").cast("int64").to_numpy()  # Spark stores UTC instants
    prices = {c: pc.coalesce(table[f"adj_{c}"], table[c]).cast("float64").to_numpy() for c in PRICES}
    return _frame(table["symbol"].to_pylist(), stamps, prices)


def bar_reader(symbols: Sequence[str], known_at: str | None = None) -> AbstractContextManager[BarReader]:
    """A reader of the stored adjusted bars, from where OHLCV_ENGINE keeps them, as known at ``known_at`` (the
    dataset's build, ISO 8601; None: the newest); refuses ``symbols`` (the dataset's) the store no longer has.
    Chosen here by the setting's name, not through training.engines: the audit shares no code with what builds
    the dataset. The lake keeps no versions: it reads the newest."""
    return _READERS[environment.engine()](symbols, known_at)


@contextmanager
def _lake_reader(symbols: Sequence[str], known_at: str | None) -> Iterator[BarReader]:
    root = environment.lake_uri()
    yield lambda wanted: _refuse_missing(read_lake(root, wanted), wanted)


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
