"""Every environment variable the project reads, parsed into typed values: no I/O, no service started.

PostgreSQL from libpq's own variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE), Redis from
REDIS_URL, MLflow from MLFLOW_TRACKING_URI, Spark from SPARK_REMOTE/SPARK_MASTER, the project's own from
OHLCV_*. A malformed value is the user's input, so it raises :class:`InputError` (exit 2) naming the variable;
whether a well-formed setting answers is for :mod:`training.infra.probes` to find out. No other module reads
these variables.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from training.errors import InputError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FEATURE_REPO = PROJECT_ROOT / "feature_repo"
CONNECT_TIMEOUT_SECONDS = 3
ENGINES = ("postgres", "spark")
# The tracking stores MLflow registers (mlflow.tracking._tracking_service.utils), less the file store it refuses.
MLFLOW_SCHEMES = ("http", "https", "databricks", "databricks-uc", "uc", "sqlite", "postgresql", "mysql", "mssql")


def _get(name: str) -> str | None:
    """A variable's value, None when unset or empty (an empty value means the default, as in libpq)."""
    return os.environ.get(name) or None


def service_timeout_seconds() -> float:
    """OHLCV_SERVICE_TIMEOUT: seconds `serve` and `predict` wait for any one call to Redis or PostgreSQL (default 2)."""
    text = _get("OHLCV_SERVICE_TIMEOUT") or "2"
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 600:
        raise InputError(f"OHLCV_SERVICE_TIMEOUT must be a number of seconds in (0, 600], got {text!r}")
    return seconds


def partition_bars() -> int:
    """OHLCV_PARTITION_BARS: bars per symbol partition, the unit every per-symbol step holds in memory.

    The default (500,000 daily bars, about 200 symbols of 10 years) keeps a partition's working set well
    under 1 GB in every step; a symbol longer than the budget forms a partition of its own.
    """
    text = _get("OHLCV_PARTITION_BARS") or "500000"
    try:
        bars = int(text)
    except ValueError:
        bars = 0
    if bars < 1:
        raise InputError(f"OHLCV_PARTITION_BARS must be a whole number of bars >= 1, got {text!r}")
    return bars


def engine() -> str:
    """OHLCV_ENGINE: where bars and features live and per-symbol work runs (default ``postgres``).

    ``postgres``: tables in PostgreSQL/TimescaleDB, computed on this machine. ``spark``: Parquet tables in the
    lake (OHLCV_LAKE), computed on Spark (see training/engines/spark/session.py for where Spark runs).
    """
    name = (_get("OHLCV_ENGINE") or "postgres").strip().lower()
    if name not in ENGINES:
        raise InputError(f"OHLCV_ENGINE must be one of {', '.join(ENGINES)}, got {name!r}")
    return name


def lake_uri() -> str:
    """OHLCV_LAKE: the lake's root, any URI Spark's Hadoop filesystems read (``file:///data/ohlcv``,
    ``s3a://bucket/ohlcv``, ``hdfs://...``), or a folder, made absolute against the driver's working directory
    (executors have their own); default ``.lake/`` in the checkout."""
    uri = (_get("OHLCV_LAKE") or str(PROJECT_ROOT / ".lake")).rstrip("/")
    return uri if "://" in uri else str(Path(uri).resolve())


# Feast's registry stores by scheme: its file registry (a local file, s3://, gs://) or its SQL registry.
_FILE_REGISTRY_SCHEMES = ("", "file", "s3", "gs")
_SQL_REGISTRY_SCHEMES = ("postgresql", "postgresql+psycopg", "mysql", "mysql+pymysql", "sqlite")


@dataclass(frozen=True)
class FeastRegistry:
    registry_type: str  # "file" or "sql", as feature_store.yaml names Feast's registry stores
    path: str


def lake_registry() -> FeastRegistry:
    """OHLCV_FEAST_REGISTRY: the lake profile's Feast registry, apart from the lake (Feast reads it on the driver,
    whatever filesystem the lake is on): a file (default ``registry.db`` in the state folder), ``s3://``,
    ``gs://``, or a SQL database URL (``postgresql+psycopg://user@host/db``) that a team shares."""
    text = _get("OHLCV_FEAST_REGISTRY") or str(state_path() / "registry.db")
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in _SQL_REGISTRY_SCHEMES:
        if urlsplit(text).password:  # the URL is written into feature_store.yaml
            raise InputError(
                f"OHLCV_FEAST_REGISTRY={without_credentials(text)} holds a password: leave it out (libpq reads "
                "PGPASSWORD or ~/.pgpass)"
            )
        return FeastRegistry("sql", text)
    if scheme not in _FILE_REGISTRY_SCHEMES:
        raise InputError(
            f"OHLCV_FEAST_REGISTRY={without_credentials(text)} is not a registry Feast reads: use a file, "
            "s3://bucket/registry.db, gs://bucket/registry.db or postgresql+psycopg://user@host/db"
        )
    if scheme in ("", "file"):  # Feast's file registry takes a path, and reads a relative one against feature_repo/
        return FeastRegistry("file", str(Path(unquote(urlsplit(text).path) if scheme else text).resolve()))
    return FeastRegistry("file", text)


def state_path() -> Path:
    """OHLCV_STATE_DIR: local state of the embedded default (online store, MLflow); default ``.state/``."""
    return Path(_get("OHLCV_STATE_DIR") or PROJECT_ROOT / ".state")


def state_dir_is_set() -> bool:
    return _get("OHLCV_STATE_DIR") is not None


def embedded_pgdata() -> Path:
    """OHLCV_PGDATA: data folder of the embedded PostgreSQL; default ``.pgdata/``, reused across runs."""
    return Path(_get("OHLCV_PGDATA") or PROJECT_ROOT / ".pgdata")


def feast_project() -> str:
    """FEAST_PROJECT: the Feast project (registry rows, online keys and tables); default ``ohlcv_features``.

    Letters, digits and underscores, not starting with an underscore: Feast's own rule
    (``feast.repo_operations.is_valid_name``) without the hyphen, which its SQLite online store refuses.
    """
    name = _get("FEAST_PROJECT") or "ohlcv_features"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_]*", name):
        raise InputError(
            f"FEAST_PROJECT must be letters, digits and underscores, starting with a letter or digit (Feast's rule), "
            f"got {name!r}"
        )
    return name


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


def configured_postgres() -> PostgresSettings | None:
    """The server libpq's variables name, or None when PGHOST is unset (the embedded server's case)."""
    host = _get("PGHOST")
    if host is None:
        return None
    text = _get("PGPORT") or "5432"
    port = int(text) if text.strip().isdigit() else 0
    if not 1 <= port <= 65535:
        raise InputError(f"PGPORT must be a TCP port number (1-65535), got {text!r}")
    return PostgresSettings(
        host=host,
        port=port,
        user=_get("PGUSER") or "postgres",
        password=_get("PGPASSWORD") or "",
        dbname=_get("PGDATABASE") or "postgres",
        sslmode=_get("PGSSLMODE") or "prefer",
        embedded=False,
    )


def embedded_postgres_at(socket_folder: Path) -> PostgresSettings:
    """The embedded server's settings once it listens on ``socket_folder`` (PGDATABASE still applies)."""
    return PostgresSettings(host=str(socket_folder), port=5432, user="postgres", password="",
                            dbname=_get("PGDATABASE") or "postgres", sslmode="disable", embedded=True)  # fmt: skip


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
    url = _get("REDIS_URL")
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise InputError(f"REDIS_URL must look like redis://host:6379/0, got scheme {parts.scheme!r}")
    try:
        port = parts.port or 6379
    except ValueError:  # not a number, or out of range
        where = parts.netloc.rpartition("@")[2]  # never the password
        raise InputError(f"REDIS_URL must look like redis://host:6379/0, got {where!r}") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise InputError(f"REDIS_URL must end in a database number (redis://host:6379/0), got /{path}")
    return RedisSettings(
        host=parts.hostname,
        port=port,
        db=int(path) if path else 0,
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme == "rediss",
    )


def redis_password_exported() -> str | None:
    """REDIS_PASSWORD: what Feast expands for ``${REDIS_PASSWORD}`` in feature_store.yaml."""
    return _get("REDIS_PASSWORD")


def mlflow_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, or a local SQLite backend under the state folder (which also has a model registry).

    File stores (``file:///...`` or a bare folder) are refused here, in one line: MLflow 3 keeps them in
    maintenance mode and raises deep inside its client (unless MLFLOW_ALLOW_FILE_STORE is set); a SQLite
    file is the supported local backend.
    """
    uri = _get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{state_path() / 'mlflow.db'}"
    scheme = urlsplit(uri).scheme.lower()
    if scheme in {"", "file"} or (len(uri) > 1 and uri[1] == ":"):  # file:, a path, C:\...
        raise InputError(
            f"MLFLOW_TRACKING_URI={without_credentials(uri)} is a file store, which MLflow 3 refuses (maintenance "
            "mode): use sqlite:///path/mlflow.db or http://host:5000 (`mlflow migrate-filestore` converts mlruns)"
        )
    if scheme.partition("+")[0] not in MLFLOW_SCHEMES:  # a database URL may name its driver: postgresql+psycopg
        raise InputError(
            f"MLFLOW_TRACKING_URI={without_credentials(uri)}: MLflow has no tracking store for {scheme}://; use "
            "http(s)://host:5000, sqlite:///path/mlflow.db or a database URL (postgresql://, mysql://, mssql://)"
        )
    return uri


def mlflow_sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` tracking URI (MLflow creates it on first use); None for other backends."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def mlflow_is_remote(uri: str) -> bool:
    return urlsplit(uri).scheme in {"http", "https", "databricks"}


def spark_remote() -> str | None:
    """SPARK_REMOTE: a Spark Connect server (``sc://host:15002``), as PySpark itself reads it."""
    return _get("SPARK_REMOTE")


def spark_master() -> str | None:
    """SPARK_MASTER: a cluster's master URL (``spark://host:7077``, ``yarn``, ``k8s://...``)."""
    return _get("SPARK_MASTER")


def without_credentials(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password or parts.username:
        return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()
    return uri
