"""``check-online``: prove the online store serves exactly the newest offline row of every symbol."""

from __future__ import annotations

import click

from training.commands.options import symbols_option
from training.contract import MATERIALIZE
from training.errors import CheckFailed


@click.command("check-online")
@symbols_option("every symbol in features.technical_indicators")
def check_online(symbols: list[str] | None) -> None:
    """Compare online features with the newest offline row of each symbol; exit 1 on any difference.

    Every feature of every family view, and every scale-free form of the on-demand view (recomputed
    from the offline row), must equal the offline value (exactly or within 1e-12 relative; missing
    values equal each other). A symbol with nothing online fails too: run `materialize`. A symbol whose views
    describe different bars, or different versions of one bar (each view's row version, the row's
    created_timestamp), is named as one predict refuses.
    """
    from training.feast_store.repository import feature_store
    from training.serving.online_store import check_online as run

    checks = run(feature_store(), symbols)
    click.echo(f"{'symbol':<8} {'online bar':<26} {'newest offline bar':<26} {'features':>8}  result")
    for c in checks:
        result = "MISSING online" if c.missing else "ok" if c.ok else f"{len(c.mismatches)} mismatch(es)"
        online = str(c.online_bar) if c.online_bar else "-"
        click.echo(f"{c.symbol:<8} {online:<26} {c.offline_bar!s:<26} {c.checked:>8}  {result}")
    failed = [c for c in checks if not c.ok]
    for c in failed[:SHOWN]:  # the values of the first few; the table above counts every symbol's
        if c.mixed:
            click.echo(f"  {c.symbol}: predict refuses it: {c.mixed}")
        for ref, online, offline in c.mismatches:
            click.echo(f"  {c.symbol} {ref}: online {_show(online)} != offline {_show(offline)}")
    if failed:
        raise mismatch_error(failed)
    click.echo(f"online store matches the newest offline row of {len(checks)} symbol(s)")


SHOWN = 5


def mismatch_error(failed: list) -> CheckFailed:
    """The one failure of check-online (and of update's parity check): a count and the first few symbols."""
    return CheckFailed(f"online store differs from the newest offline rows for {summary(failed)}")


def summary(failed: list) -> str:
    """A count and the first few symbols with what differs: one short line, whatever the universe's size."""
    parts = [f"{c.symbol} {_what(c)}" for c in failed[:SHOWN]]
    more = f", and {len(failed) - SHOWN} more" if len(failed) > SHOWN else ""
    return f"{len(failed)} symbol(s): {'; '.join(parts)}{more} (run `{MATERIALIZE}`)"


def _what(check) -> str:
    if check.missing:
        return "missing online"
    refs = [ref for ref, _, _ in check.mismatches]
    mixed = "views mix bars or versions, " if check.mixed else ""
    return mixed + ", ".join(refs[:3]) + (f" and {len(refs) - 3} more" if len(refs) > 3 else "")


def _show(value: object) -> str:
    """Full precision for numbers (the differences may be in the last digits), plain text otherwise."""
    return repr(float(value)) if isinstance(value, float) else str(value)
