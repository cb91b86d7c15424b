"""``ingest PATH``: validate a file of daily bars and upsert it into the offline store."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from training.commands.options import engine_option
from training.contract import DEFAULT_EXCHANGE_TZ
from training.errors import InputError
from training.ingestion.bar_files import ON_INVALID, ColumnMap

if TYPE_CHECKING:
    import pandas as pd

    from training.ingestion.bar_files import CleanBars, DroppedReport

DEFAULT_INVALID_REPORT = Path("artifacts") / "ingest_dropped.csv"


def _parse_close_time(ctx: click.Context, param: click.Parameter, value: str):
    try:
        return datetime.strptime(value, "%H:%M").time()
    except ValueError:
        raise click.BadParameter(f"expected HH:MM, got {value!r}") from None


def _check_report_path(path: Path) -> None:
    """Refuse an unwritable report location before loading anything, not after the bars are committed."""
    if path.is_dir():
        raise InputError(f"--invalid-report {path} is a folder; give a file path")
    existing = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise InputError(f"--invalid-report {path}: cannot write in {existing}")


def _staged(cleaned: Iterable[CleanBars], report: DroppedReport | None) -> Iterator[pd.DataFrame]:
    """Each chunk's bars for the stage, its dropped rows appended to the report as the chunk goes by."""
    for chunk in cleaned:
        if report is not None:
            report.add(chunk.dropped)
        yield chunk.bars


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--symbol", help="Symbol for every row, for a single-symbol file without a symbol column.")
@click.option("--symbol-column", help="Column holding the symbol (default: Symbol or Ticker).")
@click.option("--date-column", help="Column holding the trading date (default: Date).")
@click.option("--open-column", help="Column holding the open (default: Open).")
@click.option("--high-column", help="Column holding the high (default: High).")
@click.option("--low-column", help="Column holding the low (default: Low).")
@click.option("--close-column", help="Column holding the close (default: Close).")
@click.option("--volume-column", help="Column holding the volume (default: Volume).")
@click.option("--adj-close-column", help="Column holding the adjusted close (default: Adj Close, if present).")
@click.option(
    "--date-format",
    help="strptime format of the dates, e.g. %d/%m/%Y (default: the one known format that reads every date; "
    "a file whose dates fit several, e.g. all days <= 12, needs this option).",
)
@click.option("--exchange-tz", default=DEFAULT_EXCHANGE_TZ, show_default=True, help="Exchange time zone.")
@click.option(
    "--session-close",
    "close_time",
    default="16:00",
    show_default=True,
    callback=_parse_close_time,
    help="Session close (HH:MM, exchange time): the instant each bar becomes known.",
)
@click.option(
    "--on-invalid",
    type=click.Choice(ON_INVALID),
    default="refuse",
    show_default=True,
    help="Implausible bars (non-positive price, high < low, open/close outside [low, high], weekend date): "
    "refuse the file naming them, or drop them and list them in --invalid-report. Bars dated after now are "
    "always refused.",
)
@click.option(
    "--invalid-report",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_INVALID_REPORT,
    show_default=True,
    help="CSV of the rows dropped by --on-invalid drop (line, reason, the row as in the file).",
)
@click.option("--allow-weekends", is_flag=True, help="Accept bars dated on Saturday or Sunday (24/7 markets).")
@click.option(
    "--allow-mixed-adjustment",
    is_flag=True,
    help="Store the file even if a symbol would then hold both split/dividend-adjusted and raw bars "
    "(refused by default: indicators would jump where the series switch).",
)
@engine_option
def ingest(
    path: Path,
    symbol: str | None,
    date_format: str | None,
    exchange_tz: str,
    close_time,
    on_invalid: str,
    invalid_report: Path,
    allow_weekends: bool,
    allow_mixed_adjustment: bool,
    engine: str,
    **columns: str | None,
) -> None:
    """Validate PATH (CSV, CSV.GZ or Parquet) and upsert it into market_data.ohlcv_daily (--engine spark: the
    lake's bars table, same rules).

    One bar per (symbol, trading date), stamped at its session close in UTC: re-ingesting with another
    --session-close moves the bars to the new stamp (run compute-features afterwards). A column absent
    from the file (e.g. no Adj Close) never erases stored values. The load is one transaction: a refused
    file writes nothing (with --on-invalid drop, implausible bars are skipped and reported). Re-ingesting
    the same file changes nothing.
    """
    from training.ingestion.bar_files import DroppedReport, clean_chunks, read_chunks
    from training.ingestion.upsert import upsert_chunks

    if on_invalid == "drop":
        _check_report_path(invalid_report)
    mapping = ColumnMap(**{name.removesuffix("_column"): value for name, value in columns.items()})
    cleaned = clean_chunks(
        read_chunks(path),
        mapping,
        symbol=symbol,
        exchange_tz=exchange_tz,
        close_time=close_time,
        date_format=date_format,
        on_invalid=on_invalid,
        allow_weekends=allow_weekends,
    )
    with DroppedReport(invalid_report) if on_invalid == "drop" else nullcontext() as report:
        if engine == "spark":
            from training.infra.spark_session import session
            from training.spark.lake_ingest import upsert_lake

            result = upsert_lake(session(), _staged(cleaned, report), allow_mixed_adjustment=allow_mixed_adjustment)
        else:
            result = upsert_chunks(_staged(cleaned, report), allow_mixed_adjustment=allow_mixed_adjustment)
    restamped = f" ({result.restamped} re-stamped)" if result.restamped else ""
    click.echo(
        f"{path}: {result.rows} bars of {result.symbols} symbol(s): "
        f"{result.inserted} inserted, {result.updated} updated{restamped}, {result.unchanged} unchanged"
    )
    if report is not None:
        click.echo(f"{report.rows} implausible row(s) dropped, listed in {invalid_report}")
