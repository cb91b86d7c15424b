"""The lake profile on a Spark Connect server started here (127.0.0.1, local[2] inside it, executors with their
own interpreter and the shipped project code): the bundled data through ingest -> compute-features -> feast apply
-> build-dataset -> verify-leakage gives the one-box dataset, fingerprint included, on a ``file://`` lake; no
step warns about settings a Connect client cannot set, and a lake the client cannot reach to remove its staging
folders is refused in one line before anything is written.

The Spark tier (marked ``spark_tier``), like its standalone-cluster twin tests/test_spark_cluster.py:
`make test-spark` runs both, and CI runs that beside `make test`, which leaves the tier out.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests import spark_processes as sp
from tests.conftest import free_port
from training.infra.environment import PROJECT_ROOT

pytestmark = pytest.mark.spark_tier


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory) -> Iterator[str]:
    """A Spark Connect server on a free loopback port, stopped afterwards."""
    python, code = sp.shipped(tmp_path_factory.mktemp("executors"))
    folder = tmp_path_factory.mktemp("connect")
    port = free_port()
    server = sp.spawn(
        [
            str(sp.SPARK_HOME / "bin" / "spark-submit"),
            "--class", "org.apache.spark.sql.connect.service.SparkConnectServer", "--master", "local[2]",
            "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
            "--conf", f"spark.connect.grpc.binding.port={port}",
            "--conf", f"spark.sql.warehouse.dir={(folder / 'warehouse').as_uri()}",
            *(f"--conf={key}={value}" for key, value in sp.SMALL_DATA_CONF.items()), "spark-internal",
        ],
        folder, "server.log", sp.daemon_env(folder, PYSPARK_PYTHON=str(python), PYTHONPATH=str(code)),
    )  # fmt: skip
    try:
        sp.wait_until(lambda: sp.listening(port), [server], folder, "Spark Connect")
        yield f"sc://127.0.0.1:{port}"
    finally:
        sp.stop(server)


def test_the_lake_profile_on_spark_connect_builds_the_one_box_dataset(
    connect_server, bundled_dataset, isolated_services, tmp_path
):
    env = sp.lake_env(tmp_path, f"{isolated_services}_connect", SPARK_REMOTE=connect_server)
    done = sp.run_steps(env, tmp_path / "dataset")
    assert sp.fingerprint(tmp_path / "dataset") == bundled_dataset[1].metadata["fingerprint"]
    output = "".join(r.stdout + r.stderr for r in done)
    assert "CANNOT_MODIFY_CONFIG" not in output and "Failed to set" not in output
    sp.assert_repository_clean(tmp_path / "lake")


def test_a_lake_a_connect_client_cannot_reach_is_refused_before_writing(connect_server, isolated_services, tmp_path):
    env = sp.lake_env(tmp_path, f"{isolated_services}_connect", SPARK_REMOTE=connect_server)
    env["OHLCV_LAKE"] = "nowhere://bucket/ohlcv"
    result = subprocess.run([sys.executable, "-m", "training", "ingest", str(sp.BUNDLED_DATA)], env=env,
                            cwd=PROJECT_ROOT, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr[-2000:])
    assert "OHLCV_LAKE=nowhere://bucket/ohlcv" in result.stderr and "pyarrow" in result.stderr
