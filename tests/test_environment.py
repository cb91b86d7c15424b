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
