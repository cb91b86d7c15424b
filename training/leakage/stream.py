"""The audit a symbol partition at a time: each part of the artifact (whole symbols) with its symbols' bars.

The per-row checks (features, point-in-time, labels, warm-up) are *scans*: ``add(rows, bars)`` takes one
partition's rows (only the columns the scan names) and the bars of those symbols, ``result()`` merges what
the partitions found into one :class:`CheckResult`. Counts are sums (a minimum or maximum where the count
is one), and the offending rows are kept in the report's order, at most :data:`REPORTED_ROWS` per partition,
so the merged report is the one a single pass over every row would give, whatever the partition size.
Memory holds one part and its bars; the bars come from a :data:`BarSource` (the command reads them from the
offline store per partition) or, for tests and notebooks, a :class:`BarHistory` of every symbol.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import pandas as pd

from training.dataset.artifact import Dataset
from training.errors import ProjectError
from training.infra import stage_times
from training.leakage.panel import BarHistory
from training.leakage.result import REPORTED_ROWS, CheckResult

BarSource = Callable[[list[str]], BarHistory]  # the bars of these symbols (sorted), one partition's
Bars = BarHistory | BarSource
Progress = Callable[[str], None]
FAILURES = (ProjectError, ValueError, KeyError, TypeError)  # a check that meets one of these could not run
ORDER = ["event_timestamp", "symbol"]  # the dataset's row order: the order offending rows are reported in


class Scan(Protocol):
    name: str
    columns: Sequence[str]

    def add(self, rows: pd.DataFrame, bars: BarHistory) -> None: ...

    def result(self) -> CheckResult: ...


class Offending:
    """The first offending rows over all partitions in the report's order (``by``), and how many there were."""

    def __init__(self, by: Sequence[str] = ORDER, keep: int = REPORTED_ROWS) -> None:
        self.by, self.keep = list(by), keep
        self.heads: list[pd.DataFrame] = []
        self.total = 0

    def add(self, table: pd.DataFrame, total: int | None = None) -> None:
        """``table``: one partition's offending rows (sorted or not); ``total`` when it counts otherwise."""
        self.total += len(table) if total is None else int(total)
        if len(table):
            self.heads.append(table.sort_values(self.by, kind="stable").head(self.keep))

    def table(self) -> pd.DataFrame:
        if not self.heads:
            return pd.DataFrame()
        merged = self.heads[0] if len(self.heads) == 1 else pd.concat(self.heads, ignore_index=True)
        return merged.sort_values(self.by, kind="stable").head(self.keep).reset_index(drop=True)


def bars_for(bars: Bars, symbols: list[str]) -> BarHistory:
    return bars if isinstance(bars, BarHistory) else bars(symbols)


def symbol_counts(dataset: Dataset) -> dict[str, int]:
    """Rows per symbol (sorted by symbol), reading only the symbol column a part at a time."""
    counts: Counter[str] = Counter()
    for part in dataset.parts(["symbol"]):
        counts.update(part["symbol"].astype(str).value_counts().to_dict())
    return dict(sorted(counts.items()))


def partitions(dataset: Dataset, columns: Iterable[str]) -> Iterable[tuple[list[str], pd.DataFrame]]:
    """(sorted symbols, rows) of each part; refuses a symbol found in two parts (a part holds whole symbols)."""
    seen: set[str] = set()
    for rows in dataset.parts(list(dict.fromkeys(["symbol", *columns]))):
        symbols = sorted(rows["symbol"].astype(str).unique())
        repeated = seen.intersection(symbols)
        if repeated:
            raise ValueError(f"symbol {min(repeated)} is in two parts of the dataset: parts must hold whole symbols")
        seen.update(symbols)
        yield symbols, rows


def run_scans(
    dataset: Dataset, bars: Bars, scans: Sequence[Scan], progress: Progress = lambda message: None
) -> tuple[dict[str, CheckResult], dict[str, float]]:
    """Every scan over every partition (each part read once, its bars once); results by name, and the
    seconds each scan took plus ``load_bars`` (reading bars). A scan that raises stops (could not run)."""
    seconds = {scan.name: 0.0 for scan in scans}
    seconds["load_bars"] = 0.0
    broken: dict[str, str] = {}
    columns = list(dict.fromkeys(c for scan in scans for c in scan.columns))
    total = len(dataset.metadata.get("parts") or []) if dataset.path is not None else 1
    names = ", ".join(scan.name for scan in scans)
    try:
        for index, (symbols, rows) in enumerate(partitions(dataset, columns)):
            progress(f"partition {index + 1}/{total} ({len(symbols)} symbol(s) {symbols[0]} .. {symbols[-1]}, "
                     f"{len(rows):,} rows): {names}")  # fmt: skip
            started = time.perf_counter()
            history = bars_for(bars, symbols)
            seconds["load_bars"] += time.perf_counter() - started
            for scan in scans:
                if scan.name in broken:
                    continue
                started = time.perf_counter()
                try:
                    scan.add(rows, history)
                except FAILURES as error:
                    broken[scan.name] = str(error)
                seconds[scan.name] += time.perf_counter() - started
            del rows, history
    except FAILURES as error:  # a part or its bars could not be read: no scan could finish
        for scan in scans:
            broken.setdefault(scan.name, str(error))
    results = {}
    for scan in scans:
        if scan.name in broken:
            results[scan.name] = could_not_run(scan.name, broken[scan.name])
        else:
            try:
                results[scan.name] = scan.result()
            except FAILURES as error:
                results[scan.name] = could_not_run(scan.name, str(error))
        results[scan.name].seconds = seconds[scan.name]
    for name, spent in seconds.items():
        stage_times.add(name, spent)
    return results, seconds


def run_one(dataset: Dataset, bars: Bars, scan: Scan) -> CheckResult:
    """One scan on its own (``check_features(dataset, bars)`` and the like): the same streaming pass."""
    results, _ = run_scans(dataset, bars, [scan])
    return results[scan.name]


def could_not_run(name: str, error: str) -> CheckResult:
    return CheckResult(name=name, description="could not run", status="failed", message=f"could not run: {error}")


def add_counts(into: dict[str, Any], counts: Mapping[str, int]) -> None:
    for key, value in counts.items():
        into[key] = into.get(key, 0) + int(value)
