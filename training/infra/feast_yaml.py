"""The resolved feature_store.yaml: the template of this profile with its ``{{ slot }}`` names filled from the
environment, written where Feast's commands and the project's FeatureStore read it."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from training.errors import ServiceUnavailable
from training.infra import bootstrap, environment, probes, spark_conf
from training.infra.environment import FEATURE_REPO

_SLOT = re.compile(r"\{\{ *(\w+) *\}\}")


def online_store_config() -> dict[str, str]:
    """The ``online_store`` block of feature_store.yaml: Redis when REDIS_URL is set, else SQLite."""
    settings = environment.redis()
    if settings is None:
        return {"type": "sqlite", "path": str(bootstrap.state_dir() / "online_store.db")}
    return {"type": "redis", "connection_string": settings.feast_connection_string()}


def feast_template() -> str:
    """The template of this profile's feature_store.yaml (PostgreSQL stores, or the lake on Spark)."""
    return _profile().template


def feast_target() -> str:
    """Everything a resolved feature_store.yaml points at, in one line: equal lines, same stores.

    Resolving starts the embedded PostgreSQL when PGHOST is unset (PostgreSQL profile), so Feast's own
    commands find it running.
    """
    store = online_store_config()
    online = f"SQLite {store['path']}" if store["type"] == "sqlite" else f"Redis {store['connection_string']}"
    return f"{_profile().offline()}, project {environment.feast_project()}, online store {online}"


@dataclass(frozen=True)
class FeastProfile:
    """What an engine's feature_store.yaml needs: its template, its offline stores in one line, the template's
    own slots, and the service to probe before Feast connects."""

    template: str
    offline: Callable[[], str]
    slots: Callable[[], dict[str, str]]
    probe: Callable[[], object] = lambda: None


def _postgres_offline() -> str:
    pg = bootstrap.postgres()
    return f"{pg.describe()} (sslmode {pg.sslmode})"


def _postgres_slots() -> dict[str, str]:
    pg = bootstrap.postgres()
    query = urlencode({"host": pg.host, "port": pg.port, "sslmode": pg.sslmode})
    return {
        "registry_path": json.dumps(f"postgresql+psycopg://{quote(pg.user, safe='')}@/{quote(pg.dbname)}?{query}"),
        "pg_host": json.dumps(pg.host),
        "pg_port": str(pg.port),
        "pg_database": json.dumps(pg.dbname),
        "pg_user": json.dumps(pg.user),
        "pg_sslmode": json.dumps(pg.sslmode),
    }


def _spark_slots() -> dict[str, str]:
    registry = environment.lake_registry()
    return {
        "registry_type": json.dumps(registry.registry_type),
        "registry_path": json.dumps(registry.path),
        "spark_conf": json.dumps(spark_conf.session_conf()),
    }


# Keyed by OHLCV_ENGINE (environment.ENGINES): Feast's configuration sits below the engines, which use it.
FEAST_PROFILES = {
    "postgres": FeastProfile(
        "feature_store.template.yaml", _postgres_offline, _postgres_slots, probe=lambda: probes.check_postgres()
    ),
    "spark": FeastProfile(
        "feature_store.spark.template.yaml",
        lambda: (
            f"lake {environment.lake_uri()} on {spark_conf.where()}, "
            f"registry {environment.without_credentials(environment.lake_registry().path)}"
        ),
        _spark_slots,
    ),
}


def _profile() -> FeastProfile:
    return FEAST_PROFILES[environment.engine()]


def feast_yaml_path() -> Path:
    """Where project commands write the resolved feature_store.yaml: in feature_repo/ for the default state, so
    `feast` run there reads it; in OHLCV_STATE_DIR when that is set (a test session never rewrites the user's)."""
    if environment.state_dir_is_set():
        return bootstrap.state_dir() / "feature_store.yaml"
    return FEATURE_REPO / "feature_store.yaml"


def feast_yaml_text(template: Path | None = None) -> str:
    """The template with its ``{{ slot }}`` names filled from the environment, as YAML scalars.

    No password is filled in: libpq reads PGPASSWORD (or ~/.pgpass) itself, and Redis's stays
    ``${REDIS_PASSWORD}``, which Feast expands from the environment when it reads the file.
    """
    template = template or FEATURE_REPO / feast_template()
    target = feast_target()
    values = {
        "project": json.dumps(environment.feast_project()),
        "online_store": json.dumps(online_store_config()),  # a JSON object is a YAML flow mapping
        "resolved_for": json.dumps(target),
    }
    values |= _profile().slots()

    def fill(match: re.Match[str]) -> str:
        if match[1] not in values:
            raise ServiceUnavailable(f"{template} names an unknown setting {{{{ {match[1]} }}}}")
        return values[match[1]]

    header = (
        f"# Resolved from {template.name} by training/infra/feast_yaml.py for:\n#   {target}\n"
        "# Do not edit: project commands rewrite it, and Feast's CLI rewrites it (and stops) when the environment\n"
        "# has changed since. No password is written here (libpq reads PGPASSWORD; Redis's is ${REDIS_PASSWORD}).\n"
    )
    lines = template.read_text().splitlines(keepends=True)
    body = "".join(lines[next(i for i, line in enumerate(lines) if not line.startswith("#")) :])  # not its own header
    return header + _SLOT.sub(fill, body)


def write_feast_yaml(path: Path | None = None, template: Path | None = None) -> Path:
    """Write the resolved feature_store.yaml (atomically, and only when its text changes); returns its path."""
    path = path or feast_yaml_path()
    text = feast_yaml_text(template)
    if not path.exists() or path.read_text() != text:
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(text)
        partial.replace(path)
    return path


def prepare_feast() -> Path:
    """Check PostgreSQL (its profile) and Redis answer, export what Feast expands, and write the resolved
    feature_store.yaml.

    What every way into Feast does first: the project's FeatureStore and ``python -m training feast``.
    """
    check_feast_services()
    export_feast_environment()
    return write_feast_yaml()


def check_feast_services() -> None:
    """The services Feast will connect to answer: PostgreSQL (its registry and stores, on that profile) and the
    online store (Redis when REDIS_URL is set); one line naming the one that does not."""
    _profile().probe()
    probes.check_redis()


def export_feast_environment() -> None:
    """The variables Feast expands in the resolved file, for this process and the Feast CLI it runs."""
    os.environ["FEAST_USAGE"] = "False"
    settings = environment.redis()
    if settings is not None and settings.password:
        os.environ["REDIS_PASSWORD"] = settings.password
