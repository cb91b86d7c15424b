"""What keeping every version costs: storage of the history tables, and the time of the writes that fill them.

``python -m benchmarks.versions_storage [--bundled | --bars N] [--fraction 0.01]`` loads a universe (the bundled
file, or a synthetic one of N bars from :mod:`benchmarks.universe`) into a scratch database, computes its
features, then ingests a vendor correction of ``--fraction`` of its bars (each corrected once: the close moved
halfway to the low, the adjusted close with it) and computes the features again; then (``--dividend``) a
vendor's file restating one symbol's adjusted history after a dividend, kept as adjustment events where exact
(:mod:`training.ingestion.restatements`), and the features again. It prints, as JSON, each
step's wall time and the size of every table and its history; on TimescaleDB also the history's size once its
chunks are compressed. Steps run as ``python -m training`` processes, so ``PYTHONPATH`` chooses the code
measured (the same script times an earlier checkout for a before/after ratio).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from benchmarks.common import scratch_database

DATABASE = os.environ.get("BENCH_VERSIONS_DATABASE", "ohlcv_bench_versions")
TABLES = ("market_data.ohlcv_daily", "features.technical_indicators")
EVENTS = "market_data.ohlcv_adjustments"
BUNDLED = Path(__file__).resolve().parents[1] / "data" / "stocks.csv.gz"


def _step(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "training", *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"python -m training {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return round(time.perf_counter() - started, 2)


def corrections(source: Path, out: Path, fraction: float, seed: int = 7) -> int:
    """A file of ``fraction`` of the bars of ``source``, each corrected: close halfway to the low (still within
    the bar's range), the adjusted close scaled with it. Returns the number of bars."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    text = {c: pa.string() for c in ("Ticker", "Date")}
    table = pa_csv.read_csv(source, convert_options=pa_csv.ConvertOptions(column_types=text))
    picked = np.sort(np.random.default_rng(seed).choice(table.num_rows, int(table.num_rows * fraction), replace=False))
    rows = table.take(picked)
    close, low = rows["Close"].to_numpy(), rows["Low"].to_numpy()
    new_close = np.round((close + low) / 2, 4)
    new_close = np.where(new_close == close, np.round(close * 0.999, 4), new_close)
    new_close = np.maximum(new_close, low)
    rows = rows.set_column(rows.schema.get_field_index("Close"), "Close", pa.array(new_close))
    adjusted = rows["Adj Close"].to_numpy() * new_close / close
    rows = rows.set_column(rows.schema.get_field_index("Adj Close"), "Adj Close", pa.array(adjusted))
    pa_csv.write_csv(rows, out)
    return rows.num_rows


def restate(source: Path, out: Path, factor: float = 0.99, digits: int = 14) -> tuple[str, int]:
    """A vendor's file after a dividend of the first symbol of ``source``: its whole history, every adjusted close
    before its last session scaled by ``factor`` and printed to ``digits`` significant digits (as vendors print
    them). Returns (symbol, bars restated)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    text = {c: pa.string() for c in ("Ticker", "Date", "Adj Close")}
    table = pa_csv.read_csv(source, convert_options=pa_csv.ConvertOptions(column_types=text))
    symbol = table["Ticker"][0].as_py()
    rows = table.filter(pc.equal(table["Ticker"], symbol))
    last = pc.max(rows["Date"]).as_py()
    restated = [
        a if d == last else f"{float(a) * factor:.{digits}g}"
        for d, a in zip(rows["Date"].to_pylist(), rows["Adj Close"].to_pylist(), strict=True)
    ]
    rows = rows.set_column(rows.schema.get_field_index("Adj Close"), "Adj Close", pa.array(restated))
    pa_csv.write_csv(rows, out)
    return symbol, rows.num_rows - 1


def sizes(env: dict[str, str]) -> dict[str, dict[str, int]]:
    """Rows and bytes (table, indexes, TOAST; every chunk of a hypertable) of each table and its history."""
    import psycopg

    from training.infra import settings

    found: dict[str, dict[str, int]] = {}
    with psycopg.connect(settings.postgres().conninfo(DATABASE), autocommit=True) as conn:
        hypertables = {
            f"{s}.{n}"
            for s, n in conn.execute(
                "SELECT hypertable_schema, hypertable_name FROM timescaledb_information.hypertables"
            ).fetchall()
        } if _has_timescaledb(conn) else set()  # fmt: skip
        for table in (*TABLES, *(t + "_history" for t in TABLES), EVENTS):
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
                continue
            size = "hypertable_size(%s)" if table in hypertables else "pg_total_relation_size(%s)"
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            found[table] = {"rows": rows, "bytes": int(conn.execute(f"SELECT {size}", (table,)).fetchone()[0] or 0)}
    return found


def _has_timescaledb(conn) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()[0]


def compress_history(env: dict[str, str]) -> dict[str, int]:
    """Compress every chunk of the history hypertables (what the compression policy does with old ones); bytes."""
    import psycopg

    from training.infra import settings

    compressed: dict[str, int] = {}
    with psycopg.connect(settings.postgres().conninfo(DATABASE), autocommit=True) as conn:
        if not _has_timescaledb(conn):
            return compressed
        for table in (t + "_history" for t in TABLES):
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
                continue
            conn.execute("SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks(%s) c", (table,))
            compressed[table] = int(conn.execute("SELECT hypertable_size(%s)", (table,)).fetchone()[0] or 0)
    return compressed


@click.command()
@click.option("--bundled", is_flag=True, help="Measure the bundled data instead of a synthetic universe.")
@click.option("--bars", type=int, default=1_260_000, show_default=True, help="Synthetic universe size (2,520 days).")
@click.option("--fraction", type=float, default=0.01, show_default=True, help="Share of bars corrected once.")
@click.option("--features/--no-features", default=True, show_default=True, help="Compute features too.")
@click.option(
    "--dividend/--no-dividend",
    default=True,
    show_default=True,
    help="Then a dividend restating one symbol's adjusted history (rounded to 14 digits, as vendors print).",
)
def main(bundled: bool, bars: int, fraction: float, features: bool, dividend: bool) -> None:
    """Time the loads and measure the history tables' storage; JSON on stdout."""
    from benchmarks.universe import write_universe

    env = {**os.environ, "PGDATABASE": DATABASE}
    scratch_database(DATABASE, create=True)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-versions-") as work:
            source = BUNDLED
            if not bundled:
                days = 2_520
                source = write_universe(Path(work) / "universe.csv.gz", max(1, bars // days), days).path
            fixes = Path(work) / "corrections.csv"
            report: dict = {"source": source.name, "corrected_bars": corrections(source, fixes, fraction)}
            report["ingest_s"] = _step(env, "ingest", str(source))
            if features:
                report["compute_features_s"] = _step(env, "compute-features")
            report["before"] = sizes(env)
            report["ingest_corrections_s"] = _step(env, "ingest", str(fixes))
            if features:
                report["recompute_features_s"] = _step(env, "compute-features")
            report["after"] = sizes(env)
            if dividend:
                restated = Path(work) / "dividend.csv"
                report["dividend_symbol"], report["dividend_restated_bars"] = restate(source, restated)
                report["ingest_dividend_s"] = _step(env, "ingest", str(restated))
                if features:
                    report["recompute_after_dividend_s"] = _step(env, "compute-features")
                report["after_dividend"] = sizes(env)
            report["history_compressed_bytes"] = compress_history(env)
    finally:
        scratch_database(DATABASE, create=False)
    click.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
