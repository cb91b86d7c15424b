"""Where every service lives, in one import: the names callers use, from the modules that do each job.

- :mod:`training.infra.environment`: every variable parsed into typed values (no I/O, nothing started);
- :mod:`training.infra.bootstrap`: the embedded PostgreSQL and the local state folder, started on demand;
- :mod:`training.infra.probes`: whether the configured services answer;
- :mod:`training.infra.feast_yaml`: the resolved feature_store.yaml.

Importing this module starts nothing and imports no client library.
"""

from __future__ import annotations

from training.infra.bootstrap import mlflow_artifact_root, mlflow_tracking_uri, postgres, state_dir
from training.infra.environment import (
    ENGINES,
    FEATURE_REPO,
    PROJECT_ROOT,
    PostgresSettings,
    RedisSettings,
    embedded_pgdata,
    engine,
    feast_project,
    lake_uri,
    partition_bars,
    redis,
    service_timeout_seconds,
    without_credentials,
)
from training.infra.feast_yaml import (
    check_feast_services,
    export_feast_environment,
    feast_target,
    feast_template,
    feast_yaml_path,
    feast_yaml_text,
    online_store_config,
    prepare_feast,
    write_feast_yaml,
)
from training.infra.probes import check_mlflow, check_postgres, check_redis, postgres_unreachable

__all__ = [
    "ENGINES", "FEATURE_REPO", "PROJECT_ROOT", "PostgresSettings", "RedisSettings", "check_feast_services",
    "check_mlflow", "check_postgres", "check_redis", "embedded_pgdata", "engine", "export_feast_environment",
    "feast_project", "feast_target", "feast_template", "feast_yaml_path", "feast_yaml_text", "lake_uri",
    "mlflow_artifact_root", "mlflow_tracking_uri", "online_store_config", "partition_bars", "postgres",
    "postgres_unreachable", "prepare_feast", "redis", "service_timeout_seconds", "state_dir", "without_credentials",
    "write_feast_yaml",
]  # fmt: skip
