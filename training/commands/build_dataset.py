"""``build-dataset``: the offline store to a leakage-free training set (Parquet + JSON metadata)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from training.commands.options import symbols_option
from training.contract import DEFAULT_FEATURE_SERVICE

if TYPE_CHECKING:
    from training.config import Config

DEFAULT_OUT = Path("artifacts/dataset")


@click.command("build-dataset")
@symbols_option("every symbol in market_data.ohlcv_daily")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="First decision date (YYYY-MM-DD).")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Last decision date (YYYY-MM-DD).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML overriding the defaults.")
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True, help="Output folder.")
@click.option("--feature-service", help=f"Feast feature service (default: the model's, {DEFAULT_FEATURE_SERVICE}).")
@click.option("--horizon", type=int, help="Vertical barrier in bars (labels.horizon).")
@click.option("--profit-taking", type=float, help="Upper barrier as a fraction (labels.profit_taking).")
@click.option("--stop-loss", type=float, help="Lower barrier as a fraction (labels.stop_loss).")
@click.option("--barriers", type=click.Choice(["fixed", "volatility"]), help="Fixed or volatility-scaled barriers.")
@click.option(
    "--known-at",
    callback=lambda ctx, param, value: _moment(value),
    help="Build from the bars, adjustments and features as known at this time (ISO 8601, e.g. a dataset's "
    "metadata `known_at`; without an offset: UTC): rebuilds that dataset row for row.",
)
def build_dataset(
    config_path, out, symbols, start, end, feature_service, horizon, profit_taking, stop_loss, barriers, known_at
):
    """Build the training set from the offline store.

    One row per (symbol, bar close) in range with point-in-time features from Feast, triple-barrier
    labels, sample weights and a purged, embargoed hold-out split. Works one partition of whole symbols
    at a time (OHLCV_PARTITION_BARS bars), writing OUT/part-NNNNN.parquet per partition and
    OUT/metadata.json atomically: a failed build leaves OUT as it was. OUT must be creatable and new, empty
    or an earlier dataset (proven by its .ohlcv-dataset.json marker): anything else is refused before the
    build starts, naming what is foreign. Symbols and
    dates come from the options, else from the config file's `data` section (recorded in the metadata).
    With OHLCV_ENGINE=spark (the lake profile) labels, the point-in-time join and the per-symbol weights run
    on Spark over the lake's tables; the artifact is the same, row for row.
    """
    from training.config import load_config
    from training.dataset import artifact

    config = load_config(
        config_path,
        {
            "data": {"symbols": symbols, "start": _day(start), "end": _day(end)},
            "features": {"feature_service": feature_service},
            "labels": {
                "horizon": horizon,
                "profit_taking": profit_taking,
                "stop_loss": stop_loss,
                "barriers": barriers,
            },
        },
    )
    artifact.check_target(out)  # before minutes of work, not after
    for left in artifact.remove_abandoned_staging(out):
        click.echo(f"  removed {left}, left behind by a build that was killed", err=True)
    dataset = build_from_config(config, out, known_at)
    meta = dataset.metadata
    click.echo(
        f"{out}: {meta['rows']:,} samples of {len(meta['symbols'])} symbol(s), {len(meta['features'])} features, "
        f"split {meta['rows_by_split']}, labels {meta['label_distribution']}, fingerprint {meta['fingerprint'][:12]}"
    )


def _day(value: datetime | None) -> str | None:
    return value.date().isoformat() if value else None


def _moment(value: str | None) -> datetime | None:
    """``--known-at`` as a tz-aware time; refused in one line when it is not ISO 8601."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2024-05-01T21:30:00+00:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_from_config(config: Config, out: Path, known_at: datetime | None):
    """The build over the request the configuration's `data` section holds (Feast imported only here), on the
    profile's engine."""
    from training.engines import current_engine
    from training.feast_store.repository import feature_store
    from training.infra.stage_times import stage

    data = config.data
    with stage("feast store"):
        store = feature_store()
    return current_engine().build_dataset(
        config,
        store,
        out,
        symbols=data.symbols,
        start=date.fromisoformat(data.start) if data.start else None,
        end=date.fromisoformat(data.end) if data.end else None,
        progress=lambda message: click.echo(f"  {message}", err=True),
        known_at=known_at,
    )
