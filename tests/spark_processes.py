"""Spark's own processes for the tests that run the lake profile beyond one process (manual_spark_connect.py,
manual_spark_cluster.py): a Spark Connect server or a standalone master and worker on 127.0.0.1, executors
with an interpreter of their own (a virtualenv, not the driver's) and no project code but what is shipped to
them (the ``training`` package as a zip, the ``--py-files`` way), in working directories of their own; and the
lake profile's steps run against them as separate driver processes, on a ``file://`` lake.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

from tests.conftest import BUNDLED_DATA
from training.infra.environment import FEATURE_REPO, PROJECT_ROOT

# Spark's launch scripts: the installation $SPARK_HOME names, else the copy pyspark ships (bin/spark-class, jars/)
SPARK_HOME = Path(os.environ.get("SPARK_HOME") or Path(__import__("pyspark").__file__).resolve().parent)
STEPS = (
    ("ingest", str(BUNDLED_DATA)),
    ("compute-features",),
    ("feast", "apply"),
    ("build-dataset", "--out", "{dataset}"),
    ("verify-leakage", "--dataset", "{dataset}", "--skip-rebuild"),  # the fingerprint is compared
)
# The steps that are Spark applications: the audit reads the lake with its own Parquet reader (pyarrow), never
# Spark, and its rebuild (skipped: the test compares the fingerprint with the one-box build itself) would be one.
SPARK_STEPS = STEPS[:-1]
START_SECONDS = 180
# The test cluster's settings for data this small on 2 cores: as many shuffle partitions as cores, not 200
SMALL_DATA_CONF = {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"}


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


def spawn(args: list[str], folder: Path, log: str, env: dict[str, str]) -> subprocess.Popen:
    with (folder / log).open("w") as out:
        return subprocess.Popen(args, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until(ready, processes: list[subprocess.Popen], folder: Path, what: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while not ready():
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            stop(*processes)
            logs = "\n".join(p.read_text()[-1500:] for p in sorted(folder.glob("*.log")))
            raise RuntimeError(f"{what} did not start:\n{logs}")
        time.sleep(1)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def daemon_env(folder: Path, **extra: str) -> dict[str, str]:
    """The Spark daemons' environment: not the driver's Python path, working directory or interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_", "PYTHON"))}
    return env | {"SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(folder)} | extra


def shipped(folder: Path) -> tuple[Path, Path]:
    """(the executors' interpreter, the project's code as they get it), built in ``folder``."""
    return _executor_python(folder), _project_zip(folder)


def run_steps(env: dict[str, str], dataset: Path) -> list[subprocess.CompletedProcess]:
    """Each step as a driver process of its own; its wall time printed (``pytest -s`` shows where time goes)."""
    done = []
    for step in STEPS:
        args = [a.format(dataset=dataset) for a in step]
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "training", *args], env=env, cwd=PROJECT_ROOT,
                                capture_output=True, text=True)  # fmt: skip
        print(f"spark tier: {' '.join(step[:2])}: {time.monotonic() - started:.1f} s", file=sys.stderr)
        assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
        done.append(result)
    return done


def lake_env(tmp_path: Path, project: str, **spark: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_MASTER", "SPARK_REMOTE", "PYSPARK_PYTHON")}
    lake = {
        "OHLCV_ENGINE": "spark",
        "OHLCV_LAKE": (tmp_path / "lake").as_uri(),
        "OHLCV_STATE_DIR": str(tmp_path / "state"),  # the Feast registry and feature_store.yaml of this run
        "FEAST_PROJECT": project,
        "PYTHONPATH": str(PROJECT_ROOT),  # the driver runs the checkout; executors get the shipped zip only
    }
    return env | lake | spark


def fingerprint(dataset: Path) -> str:
    return json.loads((dataset / "metadata.json").read_text())["fingerprint"]


def assert_repository_clean(lake: Path) -> None:
    assert not (FEATURE_REPO / "spark-warehouse").exists() and not (PROJECT_ROOT / "spark-warehouse").exists()
    assert not any((lake / "_staging").iterdir())  # every staging folder removed, through Spark's filesystem
