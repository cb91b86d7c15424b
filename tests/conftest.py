"""Real services for the tests that ask for them: the configured PostgreSQL/Redis, or the embedded defaults.

No fixture here is autouse: a test that needs PostgreSQL, Redis, MLflow or Spark asks for a fixture that
needs ``isolated_services`` (directly or through ``pipeline``, ``empty_store``, ``conn`` ...), and
:func:`pytest_collection_modifyitems` marks it ``integration``; every other test is the unit tier
(``make test-unit``), which runs with both services unreachable.

Each test session gets its own PostgreSQL databases and Feast projects (so its Redis keys and registry
rows are its own) and a temporary state folder (SQLite online store, MLflow backend); nothing a user
built with `make train` is touched, and concurrent sessions do not collide. The *pipeline* database is
filled once with the bundled data, its features and the Feast registry (the ``pipeline`` fixture); each
test asking for ``empty_store`` gets a new database and Feast project of its own, dropped afterwards, so
no test sees what another left (tables, registry rows, online tables).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from training.infra import settings

BUNDLED_DATA = settings.PROJECT_ROOT / "data" / "stocks.csv.gz"
# The host tag lets a session tell its own host's dead sessions (whose pid it can check) from another host's.
HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
SESSION = f"ohlcv_test_{HOST_TAG}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
SCRATCH = f"{SESSION}_scratch"  # the prefix of each empty_store database and Feast project


def _create_database(pg: settings.PostgresSettings, name: str) -> None:
    with psycopg.connect(pg.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_database(pg: settings.PostgresSettings, name: str) -> None:
    with psycopg.connect(pg.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _drop_abandoned_databases(pg: settings.PostgresSettings) -> None:
    """Databases of this host's test sessions whose process died before teardown.

    Only names carrying this host's tag are considered: a pid says nothing about a process on another host
    sharing the server, so those databases are left to their own host.
    """
    prefix = f"ohlcv_test_{HOST_TAG}_"
    with psycopg.connect(pg.conninfo(), autocommit=True) as admin:
        rows = admin.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,))
        names = [row[0] for row in rows]
    for name in names:
        pid = name.removeprefix(prefix).split("_")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            _drop_database(pg, name)
        except PermissionError:
            pass  # another user's live process


SERVICE_FIXTURES = frozenset({"isolated_services", "mlflow_server", "spark"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that (transitively) uses a service fixture ``integration``; the rest are the unit tier."""
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


_SESSION_ENVIRONMENT: dict[str, str] = {}  # os.environ as isolated_services left it


@pytest.fixture(scope="session")
def isolated_services(tmp_path_factory: pytest.TempPathFactory):
    """The session's own databases, Feast project, state folder and MLflow backend, restored afterwards.

    MLFLOW_TRACKING_URI is always the session's own: a test never writes into a backend the shell exports.
    """
    state = tmp_path_factory.mktemp("state")
    pg = settings.check_postgres()
    settings.check_redis()
    _drop_abandoned_databases(pg)
    _create_database(pg, SESSION)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OHLCV_STATE_DIR", str(state))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{state / 'mlflow.db'}")
        patch.setenv("PGDATABASE", SESSION)
        patch.setenv("FEAST_PROJECT", SESSION)
        _SESSION_ENVIRONMENT.update(os.environ)
        yield SESSION
    _drop_database(pg, SESSION)
    _forget_online_rows(SESSION)


@contextmanager
def session_environment() -> Iterator[None]:
    """The session's environment while a session fixture builds what every test shares.

    A session fixture is set up by the first test that asks for it, inside whatever that test's module has
    patched (another database, Feast project or state folder): without this, the bundled data would land in
    that module's database, and which one would depend on the test order.
    """
    with pytest.MonkeyPatch.context() as patch:
        for name in set(os.environ) - set(_SESSION_ENVIRONMENT):
            patch.delenv(name)
        for name, value in _SESSION_ENVIRONMENT.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(autouse=True)
def _mlflow_follows_the_environment() -> Iterator[None]:
    """MLflow's tracking URI is process-global once anything calls ``mlflow.set_tracking_uri`` (a command, a
    fixture of another module): each test starts with it equal to MLFLOW_TRACKING_URI as the test's own
    fixtures set it, so where MlflowClient() looks never depends on which tests ran before."""
    _align_mlflow_with_environment()
    yield
    _align_mlflow_with_environment()


def _align_mlflow_with_environment() -> None:
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.get_tracking_uri() != os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))


def _forget_online_rows(prefix: str) -> None:
    """Delete the session's Feast keys from the configured Redis (a key ends with its project's name)."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return  # the SQLite online store lives in the session's temporary folder
    import redis

    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"*{prefix}*".encode(), count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])


def run_cli(*args: str):
    """Run a project command in-process, as `python -m training ARGS` would."""
    from training.cli import cli

    return CliRunner().invoke(cli, [*args], catch_exceptions=False)


def run_ok(*args: str) -> str:
    """:func:`run_cli` that must succeed: its output, or the test fails showing it."""
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result.output


def run_module(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m training ARGS` in a subprocess (for commands that exec another program)."""
    result = subprocess.run([sys.executable, "-m", "training", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"python -m training {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def pipeline(isolated_services):
    """The bundled data ingested, its indicators computed and the Feast repository applied, once per session."""
    with session_environment():
        for args in (("ingest", str(BUNDLED_DATA)), ("compute-features",)):
            result = run_cli(*args)
            assert result.exit_code == 0, result.output
        run_module("feast", "apply")
    return SESSION


# A command run in a fresh interpreter that reports, even when it fails, which heavy packages it imported.
_PROBE = """
import json, sys
from training.cli import cli
try:
    cli.main({args!r}, prog_name="training")
finally:
    print(json.dumps(sorted(m for m in ("feast", "mlflow", "lightgbm") if m in sys.modules)))
"""


def imported_by(*args: str) -> list[str]:
    """Run ``python -m training ARGS`` in a subprocess (it must succeed); the heavy packages it imported.

    Commands that do not need Feast must not import it (seconds on its own); tests that run a command anyway
    run it through this, so the check costs no extra run.
    """
    result = subprocess.run([sys.executable, "-c", _PROBE.format(args=list(args))], capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, artifacts proxied to a temp folder) on a free loopback port."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination", str(folder / "artifacts"),
        ],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                output = (folder / "server.log").read_text()[-2000:]
                raise RuntimeError(f"mlflow server did not start: {output}") from None
            time.sleep(0.5)
    yield uri
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def scratch_repo_config(folder: Path, project: str, offline_store: str | None = None):
    """A Feast RepoConfig of its own (registry and SQLite online store in ``folder``) on the session's
    PostgreSQL, with the given offline store type (default: the project's; "postgres" for Feast's stock one)."""
    from feast.repo_config import RepoConfig

    from training.feast_store.offline_store import CLASS_PATH

    pg = settings.postgres()
    return RepoConfig(
        project=project,
        provider="local",
        registry=str(folder / "registry.db"),
        offline_store={
            "type": offline_store or CLASS_PATH,
            "host": pg.host,
            "port": pg.port,
            "database": pg.dbname,
            "user": pg.user,
            "password": pg.password,
            "sslmode": pg.sslmode,
        },
        online_store={"type": "sqlite", "path": str(folder / "online.db")},
        entity_key_serialization_version=3,
    )


@pytest.fixture(scope="session")
def bundled_dataset(pipeline, tmp_path_factory):
    """The default panel dataset of the bundled data, built once: (folder, Dataset)."""
    from training.dataset import artifact

    out = tmp_path_factory.mktemp("dataset") / "panel"
    with session_environment():
        result = run_cli("build-dataset", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out, artifact.load(out)


@pytest.fixture(scope="session")
def spark():
    """The suite's SparkSession: local[2] (the machine's cores) unless the environment names another master."""
    from training.engines.spark.session import session

    os.environ.setdefault("SPARK_MASTER", "local[2]")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no DNS lookup of the host name at start
    spark = session()
    spark.conf.set("spark.sql.shuffle.partitions", "4")  # the tests' tables are small: 200 tasks per shuffle idle
    return spark


@pytest.fixture
def conn(isolated_services):
    from training.infra import db

    connection = db.connect(autocommit=True)
    yield connection
    connection.close()


@pytest.fixture
def empty_store(isolated_services, monkeypatch):
    """A new database and Feast project of this test's own (no market data, no features, no registry), dropped
    afterwards; the pipeline database is left alone. The connection is psycopg's own, so a test can look at a
    database the project refuses."""
    name = f"{SCRATCH}_{uuid.uuid4().hex[:6]}"
    pg = settings.postgres()
    _create_database(pg, name)
    monkeypatch.setenv("PGDATABASE", name)
    monkeypatch.setenv("FEAST_PROJECT", name)
    connection = psycopg.connect(pg.conninfo(name), autocommit=True)
    yield connection
    connection.close()
    _drop_database(pg, name)


@contextmanager
def copied_database(template: str) -> Iterator[psycopg.Connection]:
    """A new database copied from ``template`` (CREATE DATABASE ... TEMPLATE: a file copy, a second or two where
    building it again costs a minute), PGDATABASE pointing at it and a connection to it; dropped afterwards.

    A template must have no connection open: any left (a Feast registry's pool) is ended, and none is used again.
    """
    name = f"{SCRATCH}_{uuid.uuid4().hex[:6]}"
    pg = settings.postgres()
    with psycopg.connect(pg.conninfo(), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (template,),
        )
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    connection = None
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PGDATABASE", name)
            connection = psycopg.connect(pg.conninfo(name), autocommit=True)
            yield connection
    finally:
        if connection is not None:
            connection.close()
        _drop_database(pg, name)


@pytest.fixture(scope="session")
def bundled_raw() -> pd.DataFrame:
    return pd.read_csv(BUNDLED_DATA, dtype=str, keep_default_na=False)


@pytest.fixture
def write_csv(tmp_path: Path):
    def write(frame: pd.DataFrame, name: str = "bars.csv") -> Path:
        path = tmp_path / name
        frame.to_csv(path, index=False)
        return path

    return write


def free_port() -> int:
    return _free_port()


@contextmanager
def http_app(app, start_timeout: float = 60.0) -> Iterator[Callable[[str], tuple[int, dict]]]:
    """Serve ``app`` with uvicorn on a free loopback port; yields ``get(path) -> (status, JSON body)``.

    Waits for uvicorn's own readiness flag, but never longer than ``start_timeout``: a server that cannot
    start fails the test instead of hanging it.
    """
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {port} within {start_timeout:.0f} s")
            thread.join(0.05)

        def get(path: str, body: dict | bytes | None = None, content_type: str = "application/json") -> tuple:
            """GET ``path``, or POST ``body`` to it (a dict as JSON, bytes as they are)."""
            data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                             headers={"Content-Type": content_type})  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        yield get
    finally:
        server.should_exit = True
        thread.join(timeout=30)
