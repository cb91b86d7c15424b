"""``feast ARGS``: Feast's own CLI on feature_repo/, on a feature_store.yaml resolved from the environment."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def feast(args: tuple[str, ...]) -> None:
    """Run `feast -c feature_repo ARGS` (e.g. `apply`, `feature-views list`, `materialize-incremental END`).

    PostgreSQL, Redis or SQLite and the project name are resolved exactly as for every other command
    (starting the embedded PostgreSQL when PGHOST is unset) and written to feature_store.yaml, then Feast's
    CLI takes over. Running `feast ARGS` in feature_repo/ does the same.
    """
    from training.infra import settings

    resolved = settings.prepare_feast()
    executable = Path(sys.executable).with_name("feast")
    program = str(executable) if executable.exists() else shutil.which("feast")
    if program is None:
        raise click.ClickException(
            "Feast's CLI is not installed in this environment (pip install 'feast[postgres,redis]')"
        )
    os.execv(program, [program, "-c", str(settings.FEATURE_REPO), "-f", str(resolved), *(args or ("--help",))])
