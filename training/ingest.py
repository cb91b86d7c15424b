"""Load clean bars into ``market_data.ohlcv_daily``: one transaction, COPY, an upsert that is a no-op on re-runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from training import db
from training.schema import OHLCV_TABLE, ensure_ohlcv_table

if TYPE_CHECKING:
    import pandas as pd

STORED_COLUMNS = (
    "symbol",
    "event_timestamp",
    "trade_date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "adj_open",
    "adj_high",
    "adj_low",
    "adj_close",
    "adj_volume",
)
_VALUE_COLUMNS = STORED_COLUMNS[2:]

_UPSERT = f"""
INSERT INTO {OHLCV_TABLE} AS t ({", ".join(STORED_COLUMNS)}, created_timestamp)
SELECT {", ".join(STORED_COLUMNS)}, now() FROM ohlcv_stage
ON CONFLICT (symbol, event_timestamp) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _VALUE_COLUMNS)}, created_timestamp = EXCLUDED.created_timestamp
WHERE ({", ".join(f"t.{c}" for c in _VALUE_COLUMNS)})
    IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _VALUE_COLUMNS)})
RETURNING (xmax = 0) AS inserted
"""


@dataclass(frozen=True)
class IngestResult:
    rows: int
    inserted: int
    updated: int
    symbols: int

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated


def upsert_bars(bars: pd.DataFrame) -> IngestResult:
    """Write validated bars (see :func:`training.bars.clean_bars`) in one transaction.

    Rows identical to the stored ones are left alone (their created_timestamp too), so ingesting the same
    file twice changes nothing; a changed bar (a vendor correction) is updated and re-stamped.
    """
    frame = bars.reindex(columns=list(STORED_COLUMNS))
    with db.transaction() as conn:
        ensure_ohlcv_table(conn)
        conn.execute(f"CREATE TEMP TABLE ohlcv_stage (LIKE {OHLCV_TABLE} INCLUDING DEFAULTS) ON COMMIT DROP")
        db.copy_in(conn, "ohlcv_stage", frame)
        flags = [row[0] for row in conn.execute(_UPSERT).fetchall()]
    inserted = sum(flags)
    return IngestResult(
        rows=len(frame),
        inserted=inserted,
        updated=len(flags) - inserted,
        symbols=frame["symbol"].nunique(),
    )
