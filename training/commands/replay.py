"""``replay``: prove that what was served is what training would have joined, feature by feature."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import click

from training.errors import CheckFailed, InputError


def parse_bound(value: str, option: str, end: bool = False) -> datetime:
    """A date (the whole UTC day: its start, or for ``end`` the next day's start) or an ISO 8601 time (naive: UTC)."""
    text = value.strip()
    try:
        if len(text) == 10:
            moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{option} {value!r} is not a date or an ISO 8601 time (e.g. 2026-12-07)") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment + timedelta(microseconds=1) if end else moment


def _progress(groups: list) -> Iterator:
    """A progress bar over the retrievals, on stderr."""
    with click.progressbar(groups, label="replaying", file=sys.stderr) as bar:
        yield from bar


@click.command()
@click.option("--from", "start", required=True, help="First request date (UTC), or an ISO 8601 time.")
@click.option("--to", "end", required=True, help="Last request date (UTC, included), or an ISO 8601 time.")
def replay(start: str, end: str) -> None:
    """Recompute the features of every prediction logged from --from to --to (serving.prediction_log, written
    by predict, serve and update) as known at its request time, through the offline store's
    get_historical_features, and compare them with the values served.

    A bar corrected after it was served replays as it was then (the features' versions are kept), so only a
    real difference between serving and training counts. Prints one line per feature: rows compared, rows
    that differ, the first difference. Exit codes: 0 every value equal; 1 some differ; 2 bad dates or no
    prediction logged in the range.
    """
    from training.engines import current_engine
    from training.infra import db
    from training.serving.served_replay import logged_span, read_log
    from training.serving.served_replay import replay as run

    first, last = parse_bound(start, "--from"), parse_bound(end, "--to", end=True)
    if first >= last:
        raise InputError(f"--from {start} is after --to {end}")
    current_engine().require("replay")
    with db.connect() as conn:
        rows = read_log(conn, first, last)
        if not rows:
            span = logged_span(conn)
            held = (f"it holds requests from {span[0].isoformat()} to {span[1].isoformat()}" if span
                    else "it is empty (predict, serve and update write it)")  # fmt: skip
            raise InputError(f"no prediction was logged from {start} to {end}: {held}")
        from training.feast_store.repository import feature_store

        store = feature_store()
        report = run(conn, store, rows, _progress)
    click.echo(report.table())
    sources = sorted({row.source for row in rows})
    summary = (
        f"{report.rows} logged row(s) ({', '.join(sources)}) from {rows[0].request_time.isoformat()} to "
        f"{rows[-1].request_time.isoformat()}, replayed in {report.epochs} knowledge epoch(s)"
    )
    if report.differing:
        raise CheckFailed(
            f"{len(report.differing)} of {summary}: serving differs from training; features differing: "
            + ", ".join(f"{f.name} ({f.mismatched})" for f in report.features.values() if f.mismatched)
        )
    click.echo(f"replay: {summary}: every feature value equals its replay")
