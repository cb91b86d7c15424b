"""Where Spark runs comes from the environment; a setting that cannot work is one line naming it, in seconds."""

from __future__ import annotations

import socket
import stat
import time

import pytest

from training.engines.spark import session as spark
from training.errors import ServiceUnavailable
from training.infra import spark_conf


@pytest.fixture
def clean_spark_env(monkeypatch):
    for name in ("SPARK_REMOTE", "SPARK_MASTER", "JAVA_HOME"):
        monkeypatch.delenv(name, raising=False)
    spark.session.cache_clear()
    yield monkeypatch
    spark.session.cache_clear()


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_spark_remote_is_one_line_naming_it_within_seconds(clean_spark_env):
    url = f"sc://127.0.0.1:{_free_port()}"  # nothing listens there
    clean_spark_env.setenv("SPARK_REMOTE", url)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as exc:
        spark.session()
    assert time.monotonic() - started < spark.PROBE_SECONDS + 2
    message = _one_line(exc)
    assert f"SPARK_REMOTE={url}" in message and "unreachable" in message


def test_a_spark_remote_that_is_not_a_connect_url_is_refused(clean_spark_env):
    clean_spark_env.setenv("SPARK_REMOTE", "http://spark.example:8080")
    with pytest.raises(ServiceUnavailable) as exc:
        spark.session()
    assert "SPARK_REMOTE" in _one_line(exc) and "sc://" in str(exc.value)


def test_no_java_is_one_line_naming_java_home(clean_spark_env, tmp_path):
    clean_spark_env.setenv("PATH", str(tmp_path))  # no java on PATH
    with pytest.raises(ServiceUnavailable) as exc:
        spark.session()
    message = _one_line(exc)
    assert "Java 17" in message and "JAVA_HOME" in message


def test_a_java_home_without_java_is_named(clean_spark_env, tmp_path):
    clean_spark_env.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(ServiceUnavailable) as exc:
        spark.session()
    assert f"JAVA_HOME={tmp_path}" in _one_line(exc)


@pytest.mark.parametrize(("printed", "major"), [('openjdk version "11.0.21" 2023-10-17', 11),
                                                ('java version "1.8.0_392"', 8)])  # fmt: skip
def test_an_old_java_is_refused_with_its_version(clean_spark_env, tmp_path, printed, major):
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text(f"#!/bin/sh\necho '{printed}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    clean_spark_env.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(ServiceUnavailable) as exc:
        spark.session()
    assert f"is Java {major}" in _one_line(exc)


def test_the_machine_java_is_accepted():
    assert spark.java_major(spark.check_java()) >= spark.MIN_JAVA


def test_a_connect_session_sets_only_runtime_sql_settings(clean_spark_env):
    """A Connect server refuses JVM, UI and static settings from a client (CANNOT_MODIFY_CONFIG warnings)."""
    clean_spark_env.setenv("SPARK_REMOTE", "sc://spark.example:15002")
    clean_spark_env.setenv("SPARK_MASTER", "spark://ignored:7077")
    conf = spark_conf.session_conf()
    assert conf == spark_conf.SQL_CONF and all(key.startswith("spark.sql.") for key in conf)
    assert not spark_conf.local_mode()


@pytest.mark.parametrize(("master", "local"), [(None, True), ("local[2]", True), ("spark://h:7077", False),
                                               ("yarn", False), ("k8s://https://h:6443", False)])  # fmt: skip
def test_a_cluster_session_names_its_master_and_keeps_the_warehouse_out_of_the_checkout(
    clean_spark_env, tmp_path, master, local
):
    if master:
        clean_spark_env.setenv("SPARK_MASTER", master)
    clean_spark_env.setenv("OHLCV_STATE_DIR", str(tmp_path))
    conf = spark_conf.session_conf()
    assert conf.get("spark.master") == master
    assert conf["spark.sql.warehouse.dir"] == (tmp_path / "spark-warehouse").as_uri()
    assert spark_conf.local_mode() is local  # only then does the driver name the executors' interpreter


def test_feast_spark_store_gets_the_project_session_settings(clean_spark_env, tmp_path):
    """`feast apply` runs in Feast's own process, whose Spark store starts a session from spark_conf: the
    resolved file carries the master and the settings, and the registry apart from the lake."""
    import yaml

    from training.infra import feast_yaml

    clean_spark_env.setenv("OHLCV_ENGINE", "spark")
    clean_spark_env.setenv("SPARK_MASTER", "spark://127.0.0.1:7077")
    clean_spark_env.setenv("OHLCV_STATE_DIR", str(tmp_path))
    clean_spark_env.setenv("OHLCV_LAKE", "s3a://bucket/ohlcv")
    clean_spark_env.delenv("REDIS_URL", raising=False)
    clean_spark_env.delenv("OHLCV_FEAST_REGISTRY", raising=False)
    resolved = yaml.safe_load(feast_yaml.feast_yaml_text())
    assert resolved["offline_store"]["spark_conf"] == spark_conf.session_conf()
    assert resolved["offline_store"]["spark_conf"]["spark.master"] == "spark://127.0.0.1:7077"
    assert resolved["registry"] | {"cache_ttl_seconds": 0} == {
        "registry_type": "file", "path": str(tmp_path / "registry.db"), "cache_ttl_seconds": 0}  # fmt: skip
    assert "spark://127.0.0.1:7077" in resolved["offline_store"]["resolved_for"]
