"""The settings every Spark session of the project starts with: the project's own
(:mod:`training.engines.spark.session`) and the one Feast's Spark store starts in a process of its own
(``feast apply`` through Feast's CLI), which reads them from feature_store.yaml's ``spark_conf``. Both run
where the environment says, with the same settings.

Where Spark runs is Spark's own setting: ``SPARK_REMOTE`` (Spark Connect), else ``SPARK_MASTER``, else Spark's
defaults (``spark-defaults.conf``, ``PYSPARK_SUBMIT_ARGS``), which run ``local[*]``.
"""

from __future__ import annotations

from pathlib import Path

from training.infra import environment

LOG4J = Path(__file__).resolve().with_name("spark_log4j2.properties")

# What a run of ours needs whatever the cluster, and all a Spark Connect client may set (runtime SQL settings):
# UTC session time (timestamps are UTC instants everywhere in the project), Arrow transfers (applyInPandas and
# toPandas move columns, not pickled rows), and Parquet timestamps as microseconds (not Spark's legacy INT96),
# so pyarrow and Feast read the lake's files too.
SQL_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}


def where() -> str:
    """Where a session runs, for progress lines and errors (no credentials: URLs only)."""
    remote = environment.spark_remote()
    if remote:
        return f"Spark Connect at {environment.without_credentials(remote)}"
    return f"Spark master {environment.spark_master() or 'from Spark defaults (local[*])'}"


def local_mode() -> bool:
    """Whether the executors are this machine's own processes: no Connect server and no cluster master named.

    A cluster master set only in spark-defaults.conf is not seen here: name it in SPARK_MASTER too, so the
    cluster's interpreter setting is not overridden with this one's.
    """
    master = environment.spark_master()
    return environment.spark_remote() is None and (master is None or master.startswith("local"))


def warehouse_uri() -> str:
    """Spark's warehouse folder (the catalog's default database, which the project never fills), in the state
    folder: Spark's default is ``spark-warehouse/`` in the working directory, which would land in the checkout."""
    return (environment.state_path().resolve() / "spark-warehouse").as_uri()


def session_conf() -> dict[str, str]:
    """The settings a session is built with. A Connect server keeps its own master, UI and JVM settings: a
    Connect client sets runtime SQL settings only (others are refused with a warning, CANNOT_MODIFY_CONFIG)."""
    conf = dict(SQL_CONF)
    if environment.spark_remote():
        return conf
    conf["spark.app.name"] = "ohlcv-training"  # Feast's sessions too: the cluster's UI lists every step as ours
    master = environment.spark_master()
    if master:
        conf["spark.master"] = master
    conf["spark.ui.showConsoleProgress"] = "false"
    conf["spark.sql.warehouse.dir"] = warehouse_uri()
    conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={LOG4J}"
    return conf
