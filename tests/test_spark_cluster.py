"""The lake profile beyond one process: the bundled data through ingest -> compute-features -> feast apply ->
build-dataset -> verify-leakage on a Spark Connect server and on a standalone cluster (a master and a worker),
each started here on 127.0.0.1 as processes of their own, gives the one-box dataset, fingerprint included.

The lake is a ``file://`` URI, never the driver's path. Executors have their own interpreter (a virtualenv of
their own, not the driver's) and no project code but what is shipped to them (the ``training`` package as a zip,
the ``--py-files`` way), and run in a working directory of their own: a step that assumed the driver's
interpreter, paths or checkout would fail here. Every step, ``feast apply`` included, must be an application
of the cluster, and nothing may write ``spark-warehouse/`` into the repository.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BUNDLED_DATA, free_port
from training.infra.environment import FEATURE_REPO, PROJECT_ROOT

SPARK_HOME = Path(__import__("pyspark").__file__).resolve().parent
STEPS = (
    ("ingest", str(BUNDLED_DATA)),
    ("compute-features",),
    ("feast", "apply"),
    ("build-dataset", "--out", "{dataset}"),
    ("verify-leakage", "--dataset", "{dataset}", "--sample", "20", "--skip-rebuild"),  # the fingerprint is compared
)
START_SECONDS = 180


def _project_zip(folder: Path) -> Path:
    """The project's package as executors get it: a zip of ``training/`` (what ``--py-files`` ships)."""
    target = folder / "training.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted((PROJECT_ROOT / "training").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(PROJECT_ROOT))
    return target


def _executor_python(folder: Path) -> Path:
    """A virtualenv of the executors' own: the dependencies (this environment's site-packages, whose .pth files
    it does not run, so no editable install of the project) and none of the project's code."""
    env = folder / "executor-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = next(env.glob("lib/python*/site-packages"))
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env / "bin" / "python"


def _spawn(args: list[str], folder: Path, log: str, env: dict[str, str]) -> subprocess.Popen:
    with (folder / log).open("w") as out:
        return subprocess.Popen(args, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait(ready, processes: list[subprocess.Popen], folder: Path, what: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while not ready():
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            _stop(*processes)
            logs = "\n".join(p.read_text()[-1500:] for p in sorted(folder.glob("*.log")))
            raise RuntimeError(f"{what} did not start:\n{logs}")
        time.sleep(1)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _daemon_env(folder: Path, **extra: str) -> dict[str, str]:
    """The Spark daemons' environment: not the driver's Python path, working directory or interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_", "PYTHON"))}
    return env | {"SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(folder)} | extra


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> tuple[Path, Path]:
    """(the executors' interpreter, the project's code as they get it)."""
    folder = tmp_path_factory.mktemp("executors")
    return _executor_python(folder), _project_zip(folder)


@pytest.fixture(scope="module")
def connect_server(shipped, tmp_path_factory) -> Iterator[str]:
    """A Spark Connect server (local[2] inside it) on a free loopback port, its executors with their own
    interpreter and the shipped project code; stopped afterwards."""
    python, code = shipped
    folder = tmp_path_factory.mktemp("connect")
    port = free_port()
    server = _spawn(
        [
            str(SPARK_HOME / "bin" / "spark-submit"),
            "--class", "org.apache.spark.sql.connect.service.SparkConnectServer", "--master", "local[2]",
            "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
            "--conf", f"spark.connect.grpc.binding.port={port}",
            "--conf", f"spark.sql.warehouse.dir={(folder / 'warehouse').as_uri()}", "spark-internal",
        ],
        folder, "server.log", _daemon_env(folder, PYSPARK_PYTHON=str(python), PYTHONPATH=str(code)),
    )  # fmt: skip
    _wait(lambda: _listening(port), [server], folder, "Spark Connect")
    yield f"sc://127.0.0.1:{port}"
    _stop(server)


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A standalone master and one worker (2 cores), each its own process in its own working directory;
    (master URL, the worker's application folder, one ``app-*`` folder per application it ran)."""
    folder = tmp_path_factory.mktemp("cluster")
    worker_home = folder / "worker"
    worker_home.mkdir()
    port, ui = free_port(), free_port()
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    master = _spawn(
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", str(ui)],
        folder, "master.log", _daemon_env(folder),
    )  # fmt: skip
    _wait(lambda: _listening(port), [master], folder, "the Spark master")
    url = f"spark://127.0.0.1:{port}"
    worker = _spawn(
        [spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "2",
         "--memory", "4g", "--work-dir", str(worker_home / "work"), "--webui-port", str(free_port())],
        worker_home, "worker.log", _daemon_env(worker_home),
    )  # fmt: skip

    def registered() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as response:
            return any(w["state"] == "ALIVE" for w in json.load(response)["workers"])

    _wait(registered, [master, worker], folder, "the Spark worker")
    yield url, worker_home / "work"
    _stop(worker, master)


def _run_steps(env: dict[str, str], dataset: Path) -> list[subprocess.CompletedProcess]:
    done = []
    for step in STEPS:
        args = [a.format(dataset=dataset) for a in step]
        result = subprocess.run([sys.executable, "-m", "training", *args], env=env, cwd=PROJECT_ROOT,
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
        done.append(result)
    return done


def _lake_env(tmp_path: Path, project: str, **spark: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_MASTER", "SPARK_REMOTE", "PYSPARK_PYTHON")}
    lake = {
        "OHLCV_ENGINE": "spark",
        "OHLCV_LAKE": (tmp_path / "lake").as_uri(),
        "OHLCV_STATE_DIR": str(tmp_path / "state"),  # the Feast registry and feature_store.yaml of this run
        "FEAST_PROJECT": project,
        "PYTHONPATH": str(PROJECT_ROOT),  # the driver runs the checkout; executors get the shipped zip only
    }
    return env | lake | spark


def _fingerprint(dataset: Path) -> str:
    return json.loads((dataset / "metadata.json").read_text())["fingerprint"]


def _repository_clean(lake: Path) -> None:
    assert not (FEATURE_REPO / "spark-warehouse").exists() and not (PROJECT_ROOT / "spark-warehouse").exists()
    assert not any((lake / "_staging").iterdir())  # every staging folder removed, through Spark's filesystem


def test_the_lake_profile_on_spark_connect_builds_the_one_box_dataset(
    connect_server, bundled_dataset, isolated_services, tmp_path
):
    env = _lake_env(tmp_path, f"{isolated_services}_connect", SPARK_REMOTE=connect_server)
    done = _run_steps(env, tmp_path / "dataset")
    assert _fingerprint(tmp_path / "dataset") == bundled_dataset[1].metadata["fingerprint"]
    output = "".join(r.stdout + r.stderr for r in done)
    assert "CANNOT_MODIFY_CONFIG" not in output and "Failed to set" not in output
    _repository_clean(tmp_path / "lake")


def test_the_lake_profile_on_a_standalone_cluster_builds_the_one_box_dataset(
    standalone_cluster, shipped, bundled_dataset, isolated_services, tmp_path
):
    master, applications = standalone_cluster
    python, code = shipped
    conf = tmp_path / "spark-conf"  # the cluster's settings, as spark-defaults.conf gives them to every session
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text(f"spark.submit.pyFiles {code}\nspark.executor.memory 2g\n")
    env = _lake_env(tmp_path, f"{isolated_services}_cluster", SPARK_MASTER=master, SPARK_CONF_DIR=str(conf),
                    PYSPARK_PYTHON=str(python))  # fmt: skip
    before = set(applications.glob("app-*")) if applications.exists() else set()
    _run_steps(env, tmp_path / "dataset")
    assert _fingerprint(tmp_path / "dataset") == bundled_dataset[1].metadata["fingerprint"]
    # One application of the cluster per step, feast apply's own Spark session included: none ran local.
    assert len(set(applications.glob("app-*")) - before) == len(STEPS)
    _repository_clean(tmp_path / "lake")
