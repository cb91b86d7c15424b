"""``materialize``: load the newest feature row of every symbol into the online store."""

from __future__ import annotations

from datetime import timedelta

import click


@click.command()
@click.option("--views", help="Comma-separated feature views (default: all).")
@click.option(
    "--full",
    is_flag=True,
    help="Rewrite the newest row of every symbol, without first reading what the online store holds.",
)
def materialize(views: str | None, full: bool) -> None:
    """Make the online store serve the newest feature row of every symbol, writing only what changed.

    The newest row of each symbol is read from the offline store (one index probe per symbol, whatever the
    history) and compared with what the online store serves, value by value. Only views and symbols that
    differ are written: a new bar, a bar corrected in place (same event time, new values), a symbol added
    with older bars than the others, a view a stopped run never wrote, an online store that was emptied.
    A second run with nothing new writes nothing. The window written is [oldest such newest bar, newest bar],
    judged against the offline data, not the wall clock (the bundled data ends in 2013), so a symbol whose
    data stopped early is served its own latest bar; a symbol with a bar inside that window is rewritten too.

    --full skips the comparison and rewrites every symbol's newest row (overwriting rows with the same event
    time, which Feast's Redis store would otherwise skip). `feast materialize-incremental END` remains
    Feast's own: it writes the symbols with bars after the last materialized window, up to END.
    """
    from training.serving.materialization import materialize_changed

    selected = views.split(",") if views else None
    done = materialize_changed(selected, full=full)
    if not done.views:
        click.echo(
            f"nothing to write: the {done.online_store} online store already serves the newest row of "
            f"every symbol in {', '.join(selected or ['every view'])}"
        )
        return
    assert done.start is not None and done.end is not None
    click.echo(
        f"materialized {', '.join(done.views)}: {done.written} symbol(s) written ({len(done.symbols)} changed), "
        f"rows from {done.start} up to {done.end - timedelta(microseconds=1)} into the {done.online_store} "
        "online store"
    )
