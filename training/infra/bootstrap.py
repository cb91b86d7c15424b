"""What the embedded default starts on this machine when no service is configured: PostgreSQL from the
``pgserver`` package under OHLCV_PGDATA (reused, and left running, across runs) and the local state folder
(Feast's SQLite online store, the SQLite MLflow backend)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from training.errors import ServiceUnavailable
from training.infra import environment
from training.infra.environment import PostgresSettings
from training.output_paths import uncreatable


def postgres() -> PostgresSettings:
    """The configured PostgreSQL, or the embedded server (started here when PGHOST is unset)."""
    return environment.configured_postgres() or environment.embedded_postgres_at(_start_embedded_postgres())


def state_dir() -> Path:
    """The local state folder, created on first use; git-ignored."""
    path = environment.state_path()
    path.mkdir(parents=True, exist_ok=True)
    return path


def mlflow_tracking_uri() -> str:
    """The tracking URI, with the folder of a SQLite backend created (MLflow creates the file, not its folder):
    one that cannot be created or written is refused here, before any work, not deep in MLflow's client."""
    uri = environment.mlflow_tracking_uri()
    file = environment.mlflow_sqlite_file(uri)
    if file is None:
        return uri
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = uncreatable(file) or f"{file.parent} cannot be created ({exc.strerror or exc})"
    else:
        where = file if file.exists() else file.parent
        problem = None if os.access(where, os.R_OK | os.W_OK) else f"{where} is not writable"
    if problem:
        raise ServiceUnavailable(f"MLflow's SQLite backend {file} cannot be written: {problem} "
                                 "(check MLFLOW_TRACKING_URI)")  # fmt: skip
    return uri


def mlflow_artifact_root() -> str | None:
    """Artifact folder for experiments we create on a local backend; a server decides its own."""
    if environment.mlflow_is_remote(mlflow_tracking_uri()):
        return None
    return (state_dir() / "mlartifacts").as_uri()


@cache
def _start_embedded_postgres() -> Path:
    """Start (or reuse) the pgserver instance; it keeps running after we exit, so later runs are fast."""
    import logging
    import warnings

    data = environment.embedded_pgdata()
    data.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("pgserver").setLevel(logging.WARNING)
            import pgserver

            pgserver.get_server(data, cleanup_mode=None)
    except Exception as exc:  # pgserver raises plain exceptions with long logs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceUnavailable(
            f"embedded PostgreSQL could not start in {data} ({first}); "
            "set PGHOST to use an existing server, or delete that folder to start afresh"
        ) from None
    return data
