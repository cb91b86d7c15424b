"""A file of daily bars into the offline store: read, validate chunk by chunk, write through an engine's load.

What ``ingest`` and ``update`` both run. The writer is the engine's (:meth:`training.engines.Engine.ingest`),
so the same file gets the same answer on PostgreSQL and on the lake.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING

from training.contract import DEFAULT_EXCHANGE_TZ
from training.errors import InputError
from training.ingestion.bar_files import DEFAULT_SESSION_CLOSE, ColumnMap

if TYPE_CHECKING:
    import pandas as pd

    from training.ingestion.bar_files import CleanBars, DroppedReport
    from training.ingestion.load_rules import IngestResult

DEFAULT_INVALID_REPORT = Path("artifacts") / "ingest_dropped.csv"
Writer = Callable[[Iterable["pd.DataFrame"]], "IngestResult"]


@dataclass(frozen=True)
class FileReading:
    """How a file's rows become bars; the defaults read the bundled data and any Yahoo-style export."""

    columns: ColumnMap = field(default_factory=ColumnMap)
    symbol: str | None = None  # for every row of a single-symbol file without a symbol column
    date_format: str | None = None
    exchange_tz: str = DEFAULT_EXCHANGE_TZ
    close_time: time = DEFAULT_SESSION_CLOSE
    on_invalid: str = "refuse"  # or "drop": implausible bars skipped and listed in the invalid report
    allow_weekends: bool = False


@dataclass(frozen=True)
class Loaded:
    result: IngestResult
    dropped: int  # implausible rows skipped under on_invalid="drop"


def check_report_path(path: Path) -> None:
    """Refuse an unwritable report location before loading anything, not after the bars are committed."""
    if path.is_dir():
        raise InputError(f"--invalid-report {path} is a folder; give a file path")
    existing = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise InputError(f"--invalid-report {path}: cannot write in {existing}")


def load_file(path: Path, reading: FileReading, write: Writer, invalid_report: Path = DEFAULT_INVALID_REPORT) -> Loaded:
    """Validate ``path`` (CSV, CSV.GZ or Parquet) and hand its bars to ``write`` as they are read: a refusal
    anywhere in the file writes nothing. Under ``on_invalid="drop"`` the dropped rows go to ``invalid_report``,
    which appears only once the load has committed."""
    from training.ingestion.bar_files import DroppedReport, clean_chunks, read_chunks

    dropping = reading.on_invalid == "drop"
    if dropping:
        check_report_path(invalid_report)
    cleaned = clean_chunks(
        read_chunks(path),
        reading.columns,
        symbol=reading.symbol,
        exchange_tz=reading.exchange_tz,
        close_time=reading.close_time,
        date_format=reading.date_format,
        on_invalid=reading.on_invalid,
        allow_weekends=reading.allow_weekends,
    )
    with DroppedReport(invalid_report) if dropping else nullcontext() as report:
        result = write(_staged(cleaned, report))
    return Loaded(result, report.rows if report is not None else 0)


def _staged(cleaned: Iterable[CleanBars], report: DroppedReport | None) -> Iterator[pd.DataFrame]:
    """Each chunk's bars for the writer, its dropped rows appended to the report as the chunk goes by."""
    for chunk in cleaned:
        if report is not None:
            report.add(chunk.dropped)
        yield chunk.bars
