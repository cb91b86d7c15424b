"""The project's Feast FeatureStore, built from feature_repo/ with connections from training.infra.settings.

Importing Feast takes seconds, so only commands that need it import this module.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from training.infra import settings

if TYPE_CHECKING:
    from feast import FeatureStore


def feature_store() -> FeatureStore:
    """A FeatureStore on feature_repo/, after checking PostgreSQL and Redis answer (one-line errors)."""
    settings.check_postgres()
    settings.check_redis()
    settings.export_feast_environment()
    for noisy in ("feast", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from feast import FeatureStore

    return FeatureStore(repo_path=str(settings.FEATURE_REPO))
