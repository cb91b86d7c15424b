"""``ingest PATH``: validate a file of daily bars and load it into the offline store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from training.contract import DEFAULT_EXCHANGE_TZ
from training.ingestion.bar_files import ON_INVALID
from training.ingestion.load import DEFAULT_INVALID_REPORT


def _parse_close_time(ctx: click.Context, param: click.Parameter, value: str):
    try:
        return datetime.strptime(value, "%H:%M").time()
    except ValueError:
        raise click.BadParameter(f"expected HH:MM, got {value!r}") from None


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
    "--as-of-column",
    help="Column holding the vendor's knowledge time of each bar, ISO 8601 with its offset (default: As Of, "
    "Knowledge Time or Known At, if present); without one, versions are known when the ingest runs. See "
    "docs/known-at.md.",
)
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
    **columns: str | None,
) -> None:
    """Validate PATH (CSV, CSV.GZ or Parquet) and upsert it into market_data.ohlcv_daily (OHLCV_ENGINE=spark:
    the lake's bars table, same rules).

    One bar per (symbol, trading date), stamped at its session close in UTC: re-ingesting with another
    --session-close moves the bars to the new stamp (run compute-features afterwards). A column absent
    from the file (e.g. no Adj Close) never erases stored values. The load is one transaction: a refused
    file writes nothing (with --on-invalid drop, implausible bars are skipped and reported). Re-ingesting
    the same file changes nothing.
    """
    from functools import partial

    from training.engines import current_engine
    from training.ingestion.bar_files import ColumnMap
    from training.ingestion.load import FileReading, load_file

    reading = FileReading(
        columns=ColumnMap(**{name.removesuffix("_column"): value for name, value in columns.items()}),
        symbol=symbol,
        date_format=date_format,
        exchange_tz=exchange_tz,
        close_time=close_time,
        on_invalid=on_invalid,
        allow_weekends=allow_weekends,
    )
    write = partial(current_engine().ingest, allow_mixed_adjustment=allow_mixed_adjustment)
    loaded = load_file(path, reading, write, invalid_report)
    click.echo(describe_load(path, loaded.result))
    if on_invalid == "drop":
        click.echo(f"{loaded.dropped} implausible row(s) dropped, listed in {invalid_report}")


def describe_load(path: Path, result) -> str:
    notes = [f"{result.restamped} re-stamped"] if result.restamped else []
    notes += [f"{result.readjusted} re-adjusted, kept as adjustment events"] if result.readjusted else []
    restamped = f" ({'; '.join(notes)})" if notes else ""
    return (
        f"{path}: {result.rows} bars of {result.symbols} symbol(s): "
        f"{result.inserted} inserted, {result.updated} updated{restamped}, {result.unchanged} unchanged"
    )
