"""Whether the configured services answer: each probe fails within seconds, in one line naming the setting."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlsplit

from training.errors import ServiceUnavailable
from training.infra import bootstrap, environment
from training.infra.environment import CONNECT_TIMEOUT_SECONDS, PostgresSettings, RedisSettings, without_credentials


def check_postgres(settings: PostgresSettings | None = None) -> PostgresSettings:
    import psycopg

    settings = settings or bootstrap.postgres()
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


def check_redis(settings: RedisSettings | None = None) -> RedisSettings | None:
    settings = settings or environment.redis()
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


def check_mlflow(uri: str | None = None) -> str:
    """An HTTP tracking server must answer /health within seconds; local backends need no check."""
    uri = uri or bootstrap.mlflow_tracking_uri()
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
