"""Environment parsing is pure (nothing started, nothing written) and a malformed value is the user's input:
one line naming the variable, exit code 2."""

from __future__ import annotations

import pytest

from training.errors import InputError
from training.infra import environment

MALFORMED = [
    ("OHLCV_SERVICE_TIMEOUT", "abc", environment.service_timeout_seconds),
    ("OHLCV_SERVICE_TIMEOUT", "0", environment.service_timeout_seconds),
    ("OHLCV_PARTITION_BARS", "1e6", environment.partition_bars),
    ("OHLCV_ENGINE", "hadoop", environment.engine),
    ("REDIS_URL", "http://127.0.0.1:6379/0", environment.redis),
    ("MLFLOW_TRACKING_URI", "/tmp/mlruns", environment.mlflow_tracking_uri),
    ("MLFLOW_TRACKING_URI", "bogus://x", environment.mlflow_tracking_uri),
    ("FEAST_PROJECT", "a b;drop", environment.feast_project),
    ("FEAST_PROJECT", "_hidden", environment.feast_project),
    ("FEAST_PROJECT", "with-hyphen", environment.feast_project),
    ("OHLCV_FEAST_REGISTRY", "s3a://bucket/registry.db", environment.lake_registry),
    ("OHLCV_FEAST_REGISTRY", "postgresql+psycopg://me:secret@db.example/feast", environment.lake_registry),
]


@pytest.mark.parametrize(("variable", "value", "parse"), MALFORMED, ids=[f"{v}={x}" for v, x, _ in MALFORMED])
def test_a_malformed_value_is_input_naming_the_variable(monkeypatch, variable, value, parse):
    monkeypatch.setenv(variable, value)
    with pytest.raises(InputError) as raised:
        parse()
    assert variable in str(raised.value) and "\n" not in str(raised.value) and raised.value.exit_code == 2


def test_a_malformed_port_is_input_too(monkeypatch):
    monkeypatch.setenv("PGHOST", "db.example")
    monkeypatch.setenv("PGPORT", "abc")
    with pytest.raises(InputError, match=r"PGPORT must be a TCP port number \(1-65535\), got 'abc'"):
        environment.configured_postgres()


def test_parsing_starts_and_writes_nothing(monkeypatch, tmp_path):
    """Without PGHOST the embedded server is bootstrap's to start: parsing only says none is configured."""
    monkeypatch.delenv("PGHOST", raising=False)
    monkeypatch.setenv("OHLCV_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("OHLCV_PGDATA", str(tmp_path / "pgdata"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert environment.configured_postgres() is None
    assert environment.mlflow_tracking_uri() == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    assert environment.state_path() == tmp_path / "state" and environment.embedded_pgdata() == tmp_path / "pgdata"
    assert list(tmp_path.iterdir()) == []


def test_settings_are_read_only_by_the_environment_module():
    """Every OHLCV_*/PG*/REDIS_URL/MLFLOW*/SPARK* read goes through training.infra.environment."""
    import re
    from pathlib import Path

    package = Path(environment.__file__).resolve().parents[1]
    names = r"""["'](OHLCV_|PG|REDIS_URL|MLFLOW|SPARK)\w*["']"""
    read = re.compile(rf"(os\.environ\.get\(|os\.getenv\(|envvar=){names}|os\.environ\[{names}\](?!\s*=)")
    readers = sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if read.search(p.read_text()))
    assert readers == [], readers  # environment.py itself reads through _get(name)


@pytest.mark.parametrize(
    "uri", ["sqlite:///x.db", "postgresql+psycopg://u@h/db", "http://h:5000", "databricks://profile"]
)
def test_every_tracking_store_mlflow_offers_is_accepted(monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert environment.mlflow_tracking_uri() == uri


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("file:///srv/feast/registry.db", ("file", "/srv/feast/registry.db")),
        ("/srv/feast/registry.db", ("file", "/srv/feast/registry.db")),
        ("s3://bucket/registry.db", ("file", "s3://bucket/registry.db")),
        ("postgresql+psycopg://me@db.example/feast", ("sql", "postgresql+psycopg://me@db.example/feast")),
    ],
)
def test_the_lake_registry_is_a_setting_of_its_own(monkeypatch, value, expected):
    """Feast reads its registry on the driver: a file:// URI becomes the path Feast's file registry takes
    (Feast would read it against feature_repo/), a database URL selects Feast's SQL registry."""
    monkeypatch.setenv("OHLCV_LAKE", "s3a://bucket/ohlcv")  # the lake's scheme plays no part
    monkeypatch.setenv("OHLCV_FEAST_REGISTRY", value)
    registry = environment.lake_registry()
    assert (registry.registry_type, registry.path) == expected


def test_the_lake_registry_defaults_to_the_state_folder_whatever_the_lake(monkeypatch, tmp_path):
    monkeypatch.delenv("OHLCV_FEAST_REGISTRY", raising=False)
    monkeypatch.setenv("OHLCV_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("OHLCV_LAKE", "s3a://bucket/ohlcv")
    assert environment.lake_registry() == environment.FeastRegistry("file", str(tmp_path / "registry.db"))
    assert environment.lake_uri() == "s3a://bucket/ohlcv"


def test_a_file_lake_uri_is_kept_and_a_folder_made_absolute(monkeypatch, tmp_path):
    monkeypatch.setenv("OHLCV_LAKE", f"{tmp_path.as_uri()}/lake/")
    assert environment.lake_uri() == f"{tmp_path.as_uri()}/lake"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OHLCV_LAKE", "lake")
    assert environment.lake_uri() == str(tmp_path / "lake")
