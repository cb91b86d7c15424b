"""Bad settings and steps run out of order: one line naming what to fix, a non-zero exit, nothing written.

A malformed setting is the user's input (exit 2); a well-formed one whose service does not answer exits 3.

Settings are read when a command starts, so those cases run `python -m training` in a subprocess with
the bad variable, as a user's shell would.
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import BUNDLED_DATA, SESSION, run_cli, run_module
from training.infra import db

COUNTS = "SELECT (SELECT count(*) FROM market_data.ohlcv_daily), (SELECT count(*) FROM features.technical_indicators)"


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert "Traceback" not in text
    return lines[0]


def counts() -> tuple[int, int]:
    with db.connect() as conn:
        return conn.execute(COUNTS).fetchone()


@pytest.mark.parametrize(
    ("variable", "value", "command", "message"),
    [
        ("PGPORT", "abc", ("compute-features",), "PGPORT must be a TCP port number (1-65535), got 'abc'"),
        ("PGPORT", "70000", ("ingest", str(BUNDLED_DATA)), "PGPORT must be a TCP port number (1-65535), got '70000'"),
        ("REDIS_URL", "redis://127.0.0.1:6379/abc", ("materialize",), "REDIS_URL must end in a database number"),
        ("REDIS_URL", "redis://user:s3cret@127.0.0.1:abc/0", ("services",), "REDIS_URL must look like redis://"),
        ("MLFLOW_TRACKING_URI", "file:///{tmp}/mlruns", ("predict", "--symbol", "AAPL"), "is a file store"),
        ("MLFLOW_TRACKING_URI", "{tmp}/mlruns", ("services",), "is a file store"),
        ("MLFLOW_TRACKING_URI", "bogus://x", ("predict", "--symbol", "AAPL"), "MLflow has no tracking store for bogus"),
        ("FEAST_PROJECT", "a b;drop", ("materialize",), "FEAST_PROJECT must be letters, digits and underscores"),
        ("OHLCV_SERVICE_TIMEOUT", "abc", ("predict", "--symbol", "AAPL"), "must be a number of seconds in (0, 600]"),
        ("OHLCV_ENGINE", "hadoop", ("compute-features",), "OHLCV_ENGINE must be one of postgres, spark"),
        ("OHLCV_PARTITION_BARS", "many", ("compute-features",), "must be a whole number of bars >= 1, got 'many'"),
    ],
)
def test_a_malformed_setting_is_one_line_naming_the_variable(
    pipeline, monkeypatch, tmp_path, variable, value, command, message
):
    before = counts()
    if variable == "PGPORT":  # PGPORT means a server's port; without PGHOST the embedded server is used instead
        monkeypatch.setenv("PGHOST", os.environ.get("PGHOST") or "127.0.0.1")
    monkeypatch.setenv(variable, value.format(tmp=tmp_path))
    result = run_module(*command, check=False)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert message in line and variable in line
    assert "s3cret" not in result.stderr + result.stdout
    if variable == "MLFLOW_TRACKING_URI":
        assert "sqlite:///" in line and not (tmp_path / "mlruns").exists()
    monkeypatch.undo()
    assert counts() == before


def test_build_dataset_before_compute_features_says_to_run_it(empty_store, tmp_path):
    assert run_cli("ingest", str(BUNDLED_DATA)).exit_code == 0
    run_module("feast", "apply")  # the order of the report: ingest, feast apply, build-dataset
    out = tmp_path / "out"
    result = run_cli("build-dataset", "--out", str(out))
    assert result.exit_code == 2
    line = one_line(result.output.splitlines()[-1])
    assert "features.technical_indicators does not exist: run `python -m training compute-features` first" in line
    assert "UndefinedTable" not in result.output and "Traceback" not in result.output
    assert not out.exists()

    assert run_cli("compute-features", "--symbols", "AAPL,IBM").exit_code == 0
    result = run_cli("build-dataset", "--out", str(out))
    assert result.exit_code == 2
    line = one_line(result.output.splitlines()[-1])
    assert "no features for 3 symbol(s) (FB, GOOG, MSFT)" in line and "compute-features" in line
    assert not out.exists()


@pytest.mark.parametrize("command", [("check-online",), ("materialize",), ("materialize", "--views", "trend")])
def test_online_commands_before_feast_apply_say_to_run_it(pipeline, monkeypatch, command):
    project = f"{SESSION}_unapplied"
    monkeypatch.setenv("FEAST_PROJECT", project)
    result = run_cli(*command)
    assert result.exit_code == 2
    line = one_line(result.output)
    assert f"Feast project '{project}' has no feature views: run `python -m training feast apply` first" in line
    from training.feast_store.repository import feature_store

    assert feature_store().list_feature_views() == []  # nothing registered, nothing materialized
