"""Options shared by several commands, defined once."""

from __future__ import annotations

import click


def _split_symbols(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str] | None:
    names = [s.strip() for item in value for s in item.split(",") if s.strip()]
    return names or None


def symbols_option(default: str):
    """``--symbols AAPL,MSFT`` (repeatable, comma-separated) -> a list, or None for the default set."""
    return click.option(
        "--symbols",
        multiple=True,
        callback=_split_symbols,
        help=f"Comma-separated symbols (repeatable); default: {default}.",
    )


def trust_pickle_option(function):
    """``--trust-pickle``: the one way to load a model whose file can run code (pickle, foreign skops types)."""
    return click.option(
        "--trust-pickle",
        is_flag=True,
        help="Also load pickle/cloudpickle models and skops types the trainer never writes. Loading them can run "
        "code from the model file: only for models whose source you trust.",
    )(function)
