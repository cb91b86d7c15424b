"""Command line: ``python -m training COMMAND``, the one name the help and every message use.

Commands are imported only when run, so ``--help`` and commands that do not need Feast never pay for
``import feast`` (seconds on its own). Each command lives in the module named in ``COMMANDS``.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from training.errors import ProjectError

PROG_NAME = "python -m training"
# command name -> "module:function" of its click command, in the order the pipeline runs them (--help lists them so)
COMMANDS: dict[str, str] = {
    "ingest": "training.commands.ingest:ingest",
    "compute-features": "training.commands.compute_features:compute_features",
    "feast": "training.commands.feast_cli:feast",
    "build-dataset": "training.commands.build_dataset:build_dataset",
    "verify-leakage": "training.commands.verify_leakage:verify_leakage",
    "train": "training.commands.train:train",
    "tune": "training.commands.tune:tune",
    "importance": "training.commands.importance:importance",
    "meta-label": "training.commands.meta_label:meta_label",
    "materialize": "training.commands.materialize:materialize",
    "check-online": "training.commands.check_online:check_online",
    "predict": "training.commands.predict:predict",
    "serve": "training.commands.serve:serve",
    "update": "training.commands.update:update",
    "replay": "training.commands.replay:replay",
    "services": "training.commands.services:services",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use; user errors print one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ProjectError as exc:
            click.secho(f"error: {exc}", err=True, fg="red")
            ctx.exit(exc.exit_code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug log output (default: progress and warnings).")
def cli(verbose: bool) -> None:
    """Leakage-free training sets from daily OHLCV bars, served by Feast.

    Commands are listed in the order the pipeline runs them (feast: `feast apply`); `make train` runs
    ingest to check-online on the bundled data, `update` the evening loop after a close.
    """
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("feast", "mlflow", "alembic", "urllib3", "pgserver", "httpx"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main() -> None:
    sys.exit(cli.main(prog_name=PROG_NAME, standalone_mode=True))
