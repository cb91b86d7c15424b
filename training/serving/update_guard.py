"""What ``update`` proves before its first write, and the lock that keeps two of them from interleaving.

Every check here reads only (the monitoring experiment is created when missing, which is MLflow's own
bookkeeping, not the project's data): a run that cannot finish is refused before a bar is stored.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import click

from training.errors import ServiceUnavailable
from training.infra import settings

if TYPE_CHECKING:
    from training.config import MonitoringConfig
    from training.serving.model_loading import LoadedModel

LOCK_NAME = "training update"  # with the Feast project: one update at a time per database and project


@contextmanager
def update_lock() -> Iterator[None]:
    """Held for the whole run on a connection of its own; a second update waits for it, saying so in one line.

    A PostgreSQL session-level advisory lock: released when the holder's connection closes, which a killed
    process's does, so a crash never leaves it held."""
    from training.infra import db

    key = f"{LOCK_NAME} {settings.feast_project()}"
    conn = db.connect(autocommit=True)
    try:
        if not conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()[0]:
            click.echo("update: another update is running on this database and project; waiting for it to finish")
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        yield
    finally:
        conn.close()


@dataclass(frozen=True)
class Ready:
    model: LoadedModel
    reference: dict[str, Any] | None  # the model's recorded input distribution (None: drift cannot be judged)
    experiment_id: str


def mlflow_unusable(uri: str, reason: object) -> ServiceUnavailable:
    text = " ".join(str(getattr(reason, "message", reason)).split())[:300]
    where = settings.without_credentials(uri)
    return ServiceUnavailable(f"MLflow at {where} cannot be used: {text} (check MLFLOW_TRACKING_URI)")


def _local_path(uri: str) -> Path | None:
    """The file a sqlite:// or file:// (or plain path) location writes to; None for a server."""
    parts = urlsplit(uri)
    if parts.scheme == "sqlite":
        return Path(unquote(parts.path)[1:]) if parts.path.startswith("//") else None
    if parts.scheme in ("", "file"):
        return Path(unquote(parts.path))
    return None


def _writable(path: Path) -> bool:
    """``path`` can be written, or created inside its nearest existing folder."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return os.access(path, os.W_OK)


def check_mlflow_writable(experiment: str) -> str:
    """MLflow answers, the monitoring experiment exists (created when missing) and its local backend and
    artifact folder can be written; the experiment's id."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from training.infra.environment import mlflow_tracking_uri
    from training.serving.drift import monitoring_experiment

    uri = mlflow_tracking_uri()
    store = _local_path(uri)
    if store is not None and not _writable(store):
        raise mlflow_unusable(uri, f"{store} is not writable")
    try:
        mlflow.set_tracking_uri(settings.check_mlflow())  # a server must answer /health within seconds
        experiment_id = monitoring_experiment(experiment)
        artifacts = _local_path(mlflow.get_experiment(experiment_id).artifact_location)
    except (MlflowException, SQLAlchemyError, OSError) as exc:
        raise mlflow_unusable(uri, exc) from None
    if artifacts is not None and not _writable(artifacts):
        raise mlflow_unusable(uri, f"the artifact folder {artifacts} is not writable")
    return experiment_id


def preflight(model_uri: str | None, monitoring: MonitoringConfig) -> Ready:
    """The online store answers, MLflow takes writes, the model loads and its reference is read: exit 3 for a
    service, 2 for a model that does not resolve, before anything is written."""
    from mlflow.exceptions import MlflowException

    from training.serving.drift import reference_of
    from training.serving.model_loading import load_model

    settings.check_redis()
    experiment_id = check_mlflow_writable(monitoring.experiment)
    model = load_model(model_uri)
    try:
        reference = reference_of(model.uri)
    except (MlflowException, OSError) as exc:
        raise mlflow_unusable(settings.mlflow_tracking_uri(), exc) from None
    return Ready(model, reference, experiment_id)
