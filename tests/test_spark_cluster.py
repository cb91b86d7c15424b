"""The lake profile on a standalone Spark cluster started here: a master and one worker (2 cores), each a
process of its own on 127.0.0.1 in its own working directory; executors in a virtualenv of their own with the
project's code shipped through spark-defaults.conf's ``spark.submit.pyFiles``. The bundled data through
ingest -> compute-features -> feast apply -> build-dataset -> verify-leakage gives the one-box dataset,
fingerprint included, and every Spark step, feast apply included, is an application of the cluster (none ran
local).

The Spark tier (marked ``spark_tier``): `make test-spark` runs it with its Spark Connect twin,
tests/test_spark_connect.py, and CI runs that beside `make test`, which leaves the tier out (four applications
on a cluster of JVMs take minutes on 2 cores).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import spark_processes as sp
from tests.conftest import free_port

pytestmark = pytest.mark.spark_tier
SPARK_CLASS = str(sp.SPARK_HOME / "bin" / "spark-class")


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """(master URL, the worker's application folder: one ``app-*`` folder per application it ran); both daemons
    stopped afterwards, whatever failed."""
    folder = tmp_path_factory.mktemp("cluster")
    worker_home = folder / "worker"
    worker_home.mkdir()
    port, ui = free_port(), free_port()
    master = sp.spawn(
        [SPARK_CLASS, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", str(ui)],
        folder, "master.log", sp.daemon_env(folder),
    )  # fmt: skip
    try:
        sp.wait_until(lambda: sp.listening(port), [master], folder, "the Spark master")
        url = f"spark://127.0.0.1:{port}"
        worker = sp.spawn(
            [SPARK_CLASS, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "2",
             "--memory", "4g", "--work-dir", str(worker_home / "work"), "--webui-port", str(free_port())],
            worker_home, "worker.log", sp.daemon_env(worker_home),
        )  # fmt: skip
        try:
            sp.wait_until(lambda: _worker_alive(ui), [master, worker], folder, "the Spark worker")
            yield url, worker_home / "work"
        finally:
            sp.stop(worker)
    finally:
        sp.stop(master)


def _worker_alive(ui: int) -> bool:
    """Whether the master's web UI lists a live worker."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as response:
            return any(w["state"] == "ALIVE" for w in json.load(response)["workers"])
    except OSError:  # the master's web UI is not up yet
        return False


def test_the_lake_profile_on_a_standalone_cluster_builds_the_one_box_dataset(
    standalone_cluster, bundled_dataset, isolated_services, tmp_path
):
    master, applications = standalone_cluster
    python, code = sp.shipped(tmp_path / "executors")
    conf = tmp_path / "spark-conf"  # the cluster's settings, as spark-defaults.conf gives them to every session
    conf.mkdir()
    settings = {"spark.submit.pyFiles": str(code), "spark.executor.memory": "2g", **sp.SMALL_DATA_CONF}
    (conf / "spark-defaults.conf").write_text("".join(f"{key} {value}\n" for key, value in settings.items()))
    env = sp.lake_env(tmp_path, f"{isolated_services}_cluster", SPARK_MASTER=master, SPARK_CONF_DIR=str(conf),
                      PYSPARK_PYTHON=str(python))  # fmt: skip
    before = set(applications.glob("app-*")) if applications.exists() else set()
    sp.run_steps(env, tmp_path / "dataset")
    assert sp.fingerprint(tmp_path / "dataset") == bundled_dataset[1].metadata["fingerprint"]
    assert len(set(applications.glob("app-*")) - before) == len(sp.SPARK_STEPS)
    sp.assert_repository_clean(tmp_path / "lake")
