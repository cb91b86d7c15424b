"""Where Spark runs: the one place a SparkSession is made, from Spark's own settings, never from code.

- ``SPARK_REMOTE`` (``sc://host:15002``): a Spark Connect server, as PySpark itself reads it;
- ``SPARK_MASTER`` (``spark://host:7077``, ``yarn``, ``k8s://...``): a cluster's master URL;
- otherwise Spark's defaults (``spark-defaults.conf`` in ``SPARK_CONF_DIR``, ``PYSPARK_SUBMIT_ARGS``), which
  run ``local[*]`` on this machine.

The session's settings are :func:`training.infra.spark_conf.session_conf`'s, the same Feast's Spark store
starts its own sessions with. Executors run the cluster's interpreter setting; only in local mode does this
process name its own. Local and master modes start a JVM, so they need Java 17 or newer (``JAVA_HOME`` or
``java`` on PATH). A setting that cannot work (no Java, an old one, a Connect server nobody answers at) is
reported in one line naming it, within seconds, before PySpark would print a page of JVM output or wait on a
socket.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from training.errors import ServiceUnavailable
from training.infra import environment, spark_conf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MIN_JAVA = 17
CONNECT_PORT = 15002  # Spark Connect's default
PROBE_SECONDS = 3


def java_binary() -> Path:
    """The ``java`` Spark's launcher will run: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if not candidate.is_file():
            raise ServiceUnavailable(f"JAVA_HOME={home} holds no bin/java; point it at a Java {MIN_JAVA}+ runtime")
        return candidate
    found = shutil.which("java")
    if not found:
        raise ServiceUnavailable(
            f"Spark needs Java {MIN_JAVA}+: no `java` on PATH and JAVA_HOME is unset "
            "(apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
        )
    return Path(found)


def java_major(binary: Path) -> int:
    """The runtime's major version, from ``java -version`` (``"17.0.15"`` -> 17, ``"1.8.0_392"`` -> 8)."""
    try:
        done = subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceUnavailable(f"{binary} -version failed ({exc}); Spark needs Java {MIN_JAVA}+") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not match:
        raise ServiceUnavailable(f"{binary} -version printed no version; Spark needs Java {MIN_JAVA}+")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java() -> Path:
    binary = java_binary()
    major = java_major(binary)
    if major < MIN_JAVA:
        raise ServiceUnavailable(f"{binary} is Java {major}; Spark 4 needs Java {MIN_JAVA}+ (set JAVA_HOME)")
    return binary


def check_remote(url: str) -> None:
    """A TCP probe of the Spark Connect endpoint: PySpark's own client would retry for minutes."""
    parts = urlsplit(url)
    if parts.scheme != "sc" or not parts.hostname:
        raise ServiceUnavailable(f"SPARK_REMOTE={url!r} is not a Spark Connect URL like sc://host:{CONNECT_PORT}")
    port = parts.port or CONNECT_PORT
    try:
        with socket.create_connection((parts.hostname, port), timeout=PROBE_SECONDS):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ServiceUnavailable(
            f"SPARK_REMOTE={url} is unreachable ({reason}); start Spark Connect there or unset SPARK_REMOTE "
            "to run Spark locally"
        ) from None


@cache
def session() -> SparkSession:
    """The process's SparkSession, started once from the environment (see the module docstring)."""
    remote = environment.spark_remote()
    if remote:
        check_remote(remote)
    else:
        check_java()
        # Local and client-mode drivers hold collected results and co-grouped batches: Spark's 1 GB default
        # heap ran out at 250 k entity rows. spark-defaults.conf or PYSPARK_SUBMIT_ARGS still win over this.
        os.environ.setdefault("SPARK_DRIVER_MEMORY", "4g")
    if spark_conf.local_mode():
        # Local Python workers run this interpreter (its numpy, TA-Lib and project code), not `python3`. On a
        # cluster the executors' interpreter is the cluster's setting (PYSPARK_PYTHON, spark.pyspark.python).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # a broken install, not a setting: say how to repair it
        raise ServiceUnavailable("pyspark is not installed in this environment; run `make install`") from None
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO line at exit is not ours to show
    builder = SparkSession.builder
    if remote:
        builder = builder.remote(remote)
    for key, value in spark_conf.session_conf().items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM's reasons come as many exception types: one line each
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceUnavailable(f"Spark did not start ({spark_conf.where()}): {first[:300]}") from None
    if not remote:  # a Connect client has no SparkContext; the server keeps its own log level
        spark.sparkContext.setLogLevel("ERROR")
    logging.getLogger(__name__).info("Spark running on %s, lake %s", spark_conf.where(), environment.lake_uri())
    return spark
