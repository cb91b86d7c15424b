"""Symbol partitions: groups of whole symbols, each at most a bar budget, the unit every step holds in memory.

Partitions are contiguous runs of the symbols in sorted order (``COLLATE "C"``, as Python compares str), so
concatenating the partitions' rows in partition order gives the rows in (symbol, ...) order, and the
rows of one date across partitions come in symbol order: a result accumulated partition by partition in
that order equals the one accumulated over the whole panel. A symbol is never split; one longer than the
budget forms a partition of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from training.infra.schema import OHLCV_TABLE
from training.infra.versions import relation

# Bars per symbol, sorted as Python sorts str; an index-only scan of the primary key on a large table.
_BARS_PER_SYMBOL = """
SELECT symbol, count(*) FROM {bars} AS b
WHERE (%(symbols)s::text[] IS NULL OR symbol = ANY(%(symbols)s::text[]))
GROUP BY symbol ORDER BY symbol COLLATE "C"
"""


@dataclass(frozen=True)
class Partition:
    """Whole symbols read, computed and written together; ``index`` orders the partitions."""

    index: int
    symbols: tuple[str, ...]
    bars: int


def plan_partitions(counts: Iterable[tuple[str, int]], budget: int) -> list[Partition]:
    """Group (symbol, bars) pairs, in the order given, into partitions of at most ``budget`` bars."""
    if budget < 1:
        raise ValueError(f"a partition budget is a number of bars >= 1, got {budget}")
    partitions: list[Partition] = []
    symbols: list[str] = []
    bars = 0
    for symbol, n in counts:
        if symbols and bars + n > budget:
            partitions.append(Partition(len(partitions), tuple(symbols), bars))
            symbols, bars = [], 0
        symbols.append(symbol)
        bars += int(n)
    if symbols:
        partitions.append(Partition(len(partitions), tuple(symbols), bars))
    return partitions


def bar_counts(conn, symbols: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """(symbol, bars) of the stored bars of ``symbols`` (all when None), in sorted symbol order."""
    bars = relation(OHLCV_TABLE, ("symbol", "created_timestamp"), conn)  # as known at a build's time, if any
    query = _BARS_PER_SYMBOL.format(bars=bars)
    return [(s, int(n)) for s, n in conn.execute(query, {"symbols": list(symbols) if symbols else None})]


def symbol_partitions(conn, symbols: Sequence[str] | None = None, budget: int | None = None) -> list[Partition]:
    """Partitions of the stored symbols (or of ``symbols``), by default of ``OHLCV_PARTITION_BARS`` bars."""
    from training.infra.settings import partition_bars

    return plan_partitions(bar_counts(conn, symbols), budget if budget is not None else partition_bars())
