"""``ingest PATH``: validate a file of daily bars and upsert it into the offline store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from training.bars import DEFAULT_EXCHANGE_TZ, ColumnMap


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
@click.option("--exchange-tz", default=DEFAULT_EXCHANGE_TZ, show_default=True, help="Exchange time zone.")
@click.option(
    "--session-close",
    "close_time",
    default="16:00",
    show_default=True,
    callback=_parse_close_time,
    help="Session close (HH:MM, exchange time): the instant each bar becomes known.",
)
def ingest(path: Path, symbol: str | None, exchange_tz: str, close_time, **columns: str | None) -> None:
    """Validate PATH (CSV, CSV.GZ or Parquet) and upsert it into market_data.ohlcv_daily.

    Bars are stamped at their session close in UTC. The load is one transaction: a file with any bad
    row writes nothing. Re-ingesting the same file changes nothing.
    """
    from training.bars import clean_bars, read_table
    from training.ingest import upsert_bars

    mapping = ColumnMap(**{name.removesuffix("_column"): value for name, value in columns.items()})
    bars = clean_bars(read_table(path), mapping, symbol=symbol, exchange_tz=exchange_tz, close_time=close_time)
    result = upsert_bars(bars)
    click.echo(
        f"{path}: {result.rows} bars of {result.symbols} symbol(s): "
        f"{result.inserted} inserted, {result.updated} updated, {result.unchanged} unchanged"
    )
