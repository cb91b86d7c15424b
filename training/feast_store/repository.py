"""The project's Feast FeatureStore, built from feature_repo/ with connections from training.infra.settings.

The committed ``feature_store.template.yaml`` is resolved by the settings module into ``feature_store.yaml``
(git-ignored), which Feast's own CLI reads; the offline store's config checks, for every Feast command and
every FeatureStore, that a resolved file still matches the environment (:func:`check_resolved_for`).
Importing Feast takes seconds, so only commands that need it import this module.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from training.errors import ProjectError
from training.infra import environment, settings

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig


def feature_store() -> FeatureStore:
    """A FeatureStore on feature_repo/, after checking PostgreSQL and Redis answer (one-line errors).

    Also rewrites the resolved feature_store.yaml, so Feast's own CLI finds it current after any command.
    """
    settings.prepare_feast()
    for noisy in ("feast", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from feast import FeatureStore

    return FeatureStore(repo_path=str(settings.FEATURE_REPO), config=repo_config())


def repo_config() -> RepoConfig:
    """The resolved feature_store.yaml as Feast reads it (variables expanded), but from memory: a command never
    reads a file that a concurrent command with another environment (a test session) has just rewritten."""
    import yaml
    from feast.repo_config import RepoConfig

    config = RepoConfig(**yaml.safe_load(os.path.expandvars(settings.feast_yaml_text())))
    config.repo_path = settings.FEATURE_REPO
    return config


def check_resolved_for(resolved_for: str | None) -> None:
    """Refuse, in one line, a resolved feature_store.yaml that no longer matches the environment; a comparison
    only: the file is (re)written by whatever prepares Feast (:func:`training.infra.settings.prepare_feast`,
    which ``python -m training feast`` and every project command run first).

    Resolving the environment starts the embedded PostgreSQL when PGHOST is unset, so Feast's own commands
    find it running. Under Feast's own CLI the file is also compared with its template, so a file older than
    the template is named. A config built in code (no ``resolved_for``) names its own stores. The error is a
    :class:`~training.errors.ProjectError`, which any click program (Feast's CLI too) prints on one line.
    """
    if resolved_for is None:
        return
    current = settings.feast_target()
    _check_redis_password()
    files = _feast_cli_files()
    if resolved_for != current:
        before, after = resolved_for.split(", "), current.split(", ")
        pairs = zip(before, after, strict=True) if len(before) == len(after) else [(resolved_for, current)]
        changed = "; ".join(f"{old} -> {new}" for old, new in pairs if old != new)
        raise ProjectError(f"{_named(files)} was resolved for {changed}: {REWRITE}")
    if files is not None and files[1] is not None and files[0].read_text() != settings.feast_yaml_text(files[1]):
        raise ProjectError(f"{_named(files)} is older than {files[1].name}: {REWRITE}")


REWRITE = "`python -m training feast ARGS` rewrites it for this environment and runs Feast's CLI"


def _named(files: tuple[Path, Path | None] | None) -> str:
    return str(files[0]) if files is not None else "feature_store.yaml"


def _feast_cli_files() -> tuple[Path, Path | None] | None:
    """(resolved file, its template if the repository has one) when Feast's own CLI is loading, else None."""
    import click

    context = click.get_current_context(silent=True)
    found = context.obj if context is not None else None
    if not isinstance(found, dict) or "FS_YAML_FILE" not in found or "CHDIR" not in found:
        return None
    path, template = Path(found["FS_YAML_FILE"]), Path(found["CHDIR"]) / settings.feast_template()
    return path, template if template.is_file() and path.is_file() else None


def _check_redis_password() -> None:
    """Feast expands ``${REDIS_PASSWORD}`` in the file; REDIS_URL's own password never reaches Feast's CLI."""
    redis = settings.redis()
    if redis is not None and redis.password and environment.redis_password_exported() != redis.password:
        raise ProjectError(
            "REDIS_URL has a password, which feature_store.yaml never holds: "
            "export the same password as REDIS_PASSWORD for Feast's own commands"
        )
