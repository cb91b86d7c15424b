"""Where every service lives: the one module that turns environment variables into connections.

PostgreSQL is read from libpq's own variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE,
PGSSLMODE); Redis from REDIS_URL; MLflow from MLFLOW_TRACKING_URI. When a variable is unset the
embedded default takes over: a PostgreSQL started from the ``pgserver`` package under ``.pgdata/``
(reused by later runs), Feast's SQLite online store and a local SQLite MLflow backend under ``.state/``.
Every other module asks this one; none reads those variables itself.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import quote, unquote, urlencode, urlsplit

from training.errors import InputError, ServiceUnavailable

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FEATURE_REPO = PROJECT_ROOT / "feature_repo"
CONNECT_TIMEOUT_SECONDS = 3


def service_timeout_seconds() -> float:
    """OHLCV_SERVICE_TIMEOUT: seconds `serve` and `predict` wait for any one call to Redis or PostgreSQL (default 2)."""
    text = os.environ.get("OHLCV_SERVICE_TIMEOUT") or "2"
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 600:
        raise ServiceUnavailable(f"OHLCV_SERVICE_TIMEOUT must be a number of seconds in (0, 600], got {text!r}")
    return seconds


def partition_bars() -> int:
    """OHLCV_PARTITION_BARS: bars per symbol partition, the unit every per-symbol step holds in memory.

    The default (500,000 daily bars, about 200 symbols of 10 years) keeps a partition's working set well
    under 1 GB in every step; a symbol longer than the budget forms a partition of its own.
    """
    text = os.environ.get("OHLCV_PARTITION_BARS") or "500000"
    try:
        bars = int(text)
    except ValueError:
        bars = 0
    if bars < 1:
        raise InputError(f"OHLCV_PARTITION_BARS must be a whole number of bars >= 1, got {text!r}")
    return bars


ENGINES = ("postgres", "spark")


def engine() -> str:
    """OHLCV_ENGINE: where bars and features live and per-symbol work runs (default ``postgres``).

    ``postgres``: tables in PostgreSQL/TimescaleDB, computed on this machine. ``spark``: Parquet tables in the
    lake (OHLCV_LAKE), computed on Spark (see training/infra/spark_session.py for where Spark runs).
    """
    name = (os.environ.get("OHLCV_ENGINE") or "postgres").strip().lower()
    if name not in ENGINES:
        raise InputError(f"OHLCV_ENGINE must be one of {', '.join(ENGINES)}, got {name!r}")
    return name


def require_postgres_engine(command: str) -> None:
    """Refuse, in one line, a command that does not run on the lake profile yet (issue 13 brings them)."""
    if engine() != "postgres":
        raise InputError(
            f"{command} reads PostgreSQL's tables and does not run on OHLCV_ENGINE={engine()} yet; the lake profile "
            "covers ingest, compute-features, Feast's historical retrieval, materialize and check-online so far "
            "(unset OHLCV_ENGINE)"
        )


def lake_uri() -> str:
    """OHLCV_LAKE: the lake's root, a folder or any URI Spark reads (``s3a://bucket/ohlcv``); default ``.lake/``."""
    uri = (os.environ.get("OHLCV_LAKE") or str(PROJECT_ROOT / ".lake")).rstrip("/")
    if "://" not in uri:
        uri = str(Path(uri).resolve())
    return uri


def state_dir() -> Path:
    """Folder for local state of the embedded default (online store, MLflow); git-ignored."""
    path = Path(os.environ.get("OHLCV_STATE_DIR") or PROJECT_ROOT / ".state")
    path.mkdir(parents=True, exist_ok=True)
    return path


def embedded_pgdata() -> Path:
    """Data folder of the embedded PostgreSQL; git-ignored, reused across runs."""
    return Path(os.environ.get("OHLCV_PGDATA") or PROJECT_ROOT / ".pgdata")


@dataclass(frozen=True)
class PostgresSettings:
    host: str
    port: int
    user: str
    password: str
    dbname: str
    sslmode: str
    embedded: bool

    def conninfo(self, dbname: str | None = None) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=dbname or self.dbname,
            sslmode=self.sslmode,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name="ohlcv-feature-store",
        )

    def describe(self) -> str:
        """Where we connect, without the password: safe for logs and error messages."""
        where = "embedded PostgreSQL" if self.embedded else "PostgreSQL"
        return f"{where} {self.user}@{self.host}:{self.port}/{self.dbname}"


def postgres() -> PostgresSettings:
    """PostgreSQL settings from libpq's variables, or the embedded server when PGHOST is unset."""
    env = os.environ
    if env.get("PGHOST"):
        return PostgresSettings(
            host=env["PGHOST"],
            port=_port("PGPORT", env.get("PGPORT") or "5432"),
            user=env.get("PGUSER") or "postgres",
            password=env.get("PGPASSWORD") or "",
            dbname=env.get("PGDATABASE") or "postgres",
            sslmode=env.get("PGSSLMODE") or "prefer",
            embedded=False,
        )
    return PostgresSettings(
        host=str(_start_embedded_postgres()),
        port=5432,
        user="postgres",
        password="",
        dbname=env.get("PGDATABASE") or "postgres",
        sslmode="disable",
        embedded=True,
    )


def _port(variable: str, text: str) -> int:
    """A TCP port from a setting, or one line naming the variable (int() would raise a traceback wall)."""
    port = int(text) if text.strip().isdigit() else 0
    if not 1 <= port <= 65535:
        raise ServiceUnavailable(f"{variable} must be a TCP port number (1-65535), got {text!r}")
    return port


@cache
def _start_embedded_postgres() -> Path:
    """Start (or reuse) the pgserver instance; it keeps running after we exit, so later runs are fast."""
    import logging
    import warnings

    data = embedded_pgdata()
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


def check_postgres(settings: PostgresSettings | None = None) -> PostgresSettings:
    """Fail within seconds, in one line naming the setting, when PostgreSQL cannot be reached."""
    import psycopg

    settings = settings or postgres()
    try:
        psycopg.connect(settings.conninfo()).close()
    except psycopg.OperationalError as exc:
        raise postgres_unreachable(settings, exc) from None
    return settings


def postgres_unreachable(settings: PostgresSettings, exc: Exception) -> ServiceUnavailable:
    """The one-line error for a PostgreSQL that does not answer, naming the variables to fix."""
    reason = " ".join(str(exc).split())
    hint = "PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE/PGSSLMODE"
    return ServiceUnavailable(f"PostgreSQL unreachable at {settings.describe()}: {reason} (check {hint})")


@dataclass(frozen=True)
class RedisSettings:
    host: str
    port: int
    db: int
    password: str | None
    ssl: bool

    def feast_connection_string(self) -> str:
        """Feast's own Redis format, ``host:port,db=N[,password=${REDIS_PASSWORD}][,ssl=true]``: the password
        stays a variable that Feast expands when it reads feature_store.yaml, so the file never holds it."""
        parts = [f"{self.host}:{self.port}", f"db={self.db}"]
        if self.password:
            parts.append("password=${REDIS_PASSWORD}")
        if self.ssl:
            parts.append("ssl=true")
        return ",".join(parts)

    def describe(self) -> str:
        return f"Redis {self.host}:{self.port}/{self.db}"


def redis() -> RedisSettings | None:
    """Redis settings from REDIS_URL, or None for the embedded default (Feast's SQLite online store)."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise ServiceUnavailable(f"REDIS_URL must look like redis://host:6379/0, got scheme {parts.scheme!r}")
    try:
        port = parts.port or 6379
    except ValueError:  # not a number, or out of range
        where = parts.netloc.rpartition("@")[2]  # never the password
        raise ServiceUnavailable(f"REDIS_URL must look like redis://host:6379/0, got {where!r}") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ServiceUnavailable(f"REDIS_URL must end in a database number (redis://host:6379/0), got /{path}")
    return RedisSettings(
        host=parts.hostname,
        port=port,
        db=int(path) if path else 0,
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme == "rediss",
    )


def check_redis(settings: RedisSettings | None = None) -> RedisSettings | None:
    settings = settings or redis()
    if settings is None:
        return None
    import redis as redis_client
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis_client.Redis(
        retry=Retry(NoBackoff(), 0),  # one attempt: a down server is reported in seconds, not after backoff
        host=settings.host,
        port=settings.port,
        db=settings.db,
        password=settings.password,
        ssl=settings.ssl,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=CONNECT_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    except redis_client.RedisError as exc:
        raise ServiceUnavailable(f"Redis unreachable at {settings.describe()}: {exc} (check REDIS_URL)") from None
    finally:
        client.close()
    return settings


def online_store_config() -> dict[str, str]:
    """The ``online_store`` block of feature_store.yaml: Redis when REDIS_URL is set, else SQLite."""
    settings = redis()
    if settings is None:
        return {"type": "sqlite", "path": str(state_dir() / "online_store.db")}
    return {"type": "redis", "connection_string": settings.feast_connection_string()}


def feast_project() -> str:
    return os.environ.get("FEAST_PROJECT") or "ohlcv_features"


FEAST_TEMPLATES = {"postgres": "feature_store.template.yaml", "spark": "feature_store.spark.template.yaml"}
_SLOT = re.compile(r"\{\{ *(\w+) *\}\}")


def feast_template() -> str:
    """The template of this profile's feature_store.yaml (PostgreSQL stores, or the lake on Spark)."""
    return FEAST_TEMPLATES[engine()]


def feast_target() -> str:
    """Everything a resolved feature_store.yaml points at, in one line: equal lines, same stores.

    Resolving starts the embedded PostgreSQL when PGHOST is unset (PostgreSQL profile), so Feast's own
    commands find it running.
    """
    store = online_store_config()
    online = f"SQLite {store['path']}" if store["type"] == "sqlite" else f"Redis {store['connection_string']}"
    if engine() == "spark":
        return f"lake {lake_uri()} on Spark, project {feast_project()}, online store {online}"
    pg = postgres()
    return f"{pg.describe()} (sslmode {pg.sslmode}), project {feast_project()}, online store {online}"


def feast_yaml_path() -> Path:
    """Where project commands write the resolved feature_store.yaml: in feature_repo/ for the default state, so
    `feast` run there reads it; in OHLCV_STATE_DIR when that is set (a test session never rewrites the user's)."""
    if os.environ.get("OHLCV_STATE_DIR"):
        return state_dir() / "feature_store.yaml"
    return FEATURE_REPO / "feature_store.yaml"


def feast_yaml_text(template: Path | None = None) -> str:
    """The template with its ``{{ slot }}`` names filled from the environment, as YAML scalars.

    No password is filled in: libpq reads PGPASSWORD (or ~/.pgpass) itself, and Redis's stays
    ``${REDIS_PASSWORD}``, which Feast expands from the environment when it reads the file.
    """
    template = template or FEATURE_REPO / feast_template()
    target = feast_target()
    values = {
        "project": json.dumps(feast_project()),
        "online_store": json.dumps(online_store_config()),  # a JSON object is a YAML flow mapping
        "resolved_for": json.dumps(target),
    }
    if engine() == "spark":
        values["lake_registry"] = json.dumps(f"{lake_uri()}/registry.db")
    else:
        pg = postgres()
        query = urlencode({"host": pg.host, "port": pg.port, "sslmode": pg.sslmode})
        values |= {
            "registry_path": json.dumps(f"postgresql+psycopg://{quote(pg.user, safe='')}@/{quote(pg.dbname)}?{query}"),
            "pg_host": json.dumps(pg.host),
            "pg_port": str(pg.port),
            "pg_database": json.dumps(pg.dbname),
            "pg_user": json.dumps(pg.user),
            "pg_sslmode": json.dumps(pg.sslmode),
        }

    def fill(match: re.Match[str]) -> str:
        if match[1] not in values:
            raise ServiceUnavailable(f"{template} names an unknown setting {{{{ {match[1]} }}}}")
        return values[match[1]]

    header = (
        f"# Resolved from {template.name} by training/infra/settings.py for:\n#   {target}\n"
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
    if engine() == "postgres":
        check_postgres()
    check_redis()
    export_feast_environment()
    return write_feast_yaml()


def export_feast_environment() -> None:
    """The variables Feast expands in the resolved file, for this process and the Feast CLI it runs."""
    os.environ["FEAST_USAGE"] = "False"
    settings = redis()
    if settings is not None and settings.password:
        os.environ["REDIS_PASSWORD"] = settings.password


def mlflow_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, or a local SQLite backend (which also supports the model registry).

    File stores (``file:///...`` or a bare folder) are refused here, in one line: MLflow 3 keeps them in
    maintenance mode and raises deep inside its client (unless MLFLOW_ALLOW_FILE_STORE is set); a SQLite
    file is the supported local backend.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{state_dir() / 'mlflow.db'}"
    if urlsplit(uri).scheme in {"", "file"} or (len(uri) > 1 and uri[1] == ":"):  # file:, a path, C:\...
        raise ServiceUnavailable(
            f"MLFLOW_TRACKING_URI={without_credentials(uri)} is a file store, which MLflow 3 refuses (maintenance "
            "mode): use sqlite:///path/mlflow.db or http://host:5000 (`mlflow migrate-filestore` converts mlruns)"
        )
    return uri


def mlflow_artifact_root() -> str | None:
    """Artifact folder for experiments we create on a local backend; a server decides its own."""
    if urlsplit(mlflow_tracking_uri()).scheme in {"http", "https", "databricks"}:
        return None
    return (state_dir() / "mlartifacts").as_uri()


def check_mlflow(uri: str | None = None) -> str:
    """An HTTP tracking server must answer /health within seconds; local backends need no check."""
    uri = uri or mlflow_tracking_uri()
    if urlsplit(uri).scheme not in {"http", "https"}:
        return uri
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=CONNECT_TIMEOUT_SECONDS) as response:
            response.read()
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServiceUnavailable(
            f"MLflow tracking server unreachable at {without_credentials(uri)}: {reason} (check MLFLOW_TRACKING_URI)"
        ) from None
    return uri


def without_credentials(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password or parts.username:
        return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()
    return uri
