"""``compute-features``: compute the 23 indicators from stored bars into features.technical_indicators."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from training.commands.options import symbols_option

if TYPE_CHECKING:
    from training.indicators.backfill import FeaturesResult


@click.command("compute-features")
@symbols_option("every symbol in market_data.ohlcv_daily")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="First trade date to write (YYYY-MM-DD).")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Last trade date to write (YYYY-MM-DD).")
@click.option("--full", is_flag=True, help="Recompute every bar, not only bars without current feature rows.")
def compute_features(symbols: list[str] | None, start, end, full: bool) -> None:
    """Compute the indicators from adjusted bars and upsert them into features.technical_indicators.

    Incremental by default: per symbol, only bars from the first one without a current feature row are
    written, yet always computed on the symbol's full history, so the values equal a full recompute.
    --start/--end restrict the rows written (earlier history is still read for the warm-up). One
    transaction: bad input writes nothing, and re-running changes nothing. With OHLCV_ENGINE=spark the lake's
    stale symbols are computed on Spark into its features table, by the same rules.
    """
    from training.engines import current_engine

    engine = current_engine()
    start, end = (start.date() if start else None), (end.date() if end else None)
    report_features(engine.features_table(), engine.compute_features(symbols, start, end, full))


def report_features(table: str, result: FeaturesResult) -> None:
    mode = "full recompute" if result.full else "incremental"
    removed = f", {result.removed} removed (their bar was deleted or re-stamped)" if result.removed else ""
    if not result.rows:
        click.echo(f"{table}: up to date, nothing to compute ({mode}){removed}")
        return
    click.echo(
        f"{table}: {result.rows} rows of {result.symbols} symbol(s) computed ({mode}): "
        f"{result.inserted} inserted, {result.updated} updated, {result.unchanged} unchanged{removed}"
    )
