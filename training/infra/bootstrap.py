"""What the embedded default starts on this machine when no service is configured: PostgreSQL from the
``pgserver`` package under OHLCV_PGDATA (reused, and left running, across runs) and the local state folder
(Feast's SQLite online store, the SQLite MLflow backend)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from training.errors import ServiceUnavailable
from training.infra import environment
from training.infra.environment import PostgresSettings


def postgres() -> PostgresSettings:
    """The configured PostgreSQL, or the embedded server (started here when PGHOST is unset)."""
    return environment.configured_postgres() or environment.embedded_postgres_at(_start_embedded_postgres())


def state_dir() -> Path:
    """The local state folder, created on first use; git-ignored."""
    path = environment.state_path()
    path.mkdir(parents=True, exist_ok=True)
    return path


def mlflow_tracking_uri() -> str:
    """The tracking URI, with the local backend's folder created when it is the default SQLite file."""
    uri = environment.mlflow_tracking_uri()
    if not environment.mlflow_is_remote(uri) and uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
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
