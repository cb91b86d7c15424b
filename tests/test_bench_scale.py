"""The scale benchmark's harness at a tiny size, so it cannot rot between the runs that matter (issue 12)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.csv as pa_csv

from benchmarks.bench_scale import SizeRun, StepRun, stage_table
from benchmarks.universe import COLUMNS, write_universe
from training.infra import settings


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "benchmarks.bench_scale", "--results", str(tmp_path), "--reference", "none", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=settings.PROJECT_ROOT, timeout=300)


def _rows(markdown: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith("| ") and not line.startswith("| size")]  # fmt: skip


def test_universe_is_seeded_and_ohlc_consistent(tmp_path):
    first = write_universe(tmp_path / "a.csv.gz", symbols=7, days=50, seed=3, chunk_bars=100)
    second = write_universe(tmp_path / "b.csv.gz", symbols=7, days=50, seed=3, chunk_bars=10_000)
    a, b = (pa_csv.read_csv(u.path).to_pandas() for u in (first, second))
    assert list(a.columns) == list(COLUMNS) and len(a) == 350 and a["Ticker"].nunique() == 7
    assert a.equals(b)  # the chunk size does not change the data
    assert (a["Low"] > 0).all() and (a["Volume"] > 0).all()
    assert (a["Low"] <= a[["Open", "Close"]].min(axis=1)).all()
    assert (a[["Open", "Close"]].max(axis=1) <= a["High"]).all()
    assert (pd.to_datetime(a["Date"]).dt.weekday < 5).all()


def test_a_row_per_step_with_its_peak_memory(isolated_services, tmp_path):
    result = _bench(tmp_path, "--symbols", "6", "--days", "120", "--steps", "ingest,compute-features")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _rows((tmp_path / "scale.md").read_text())
    assert [row[2] for row in rows] == ["ingest", "compute-features"]
    for row in rows:
        assert row[1] == "720" and row[-1] == "0"
        assert float(row[6].split()[0]) > 0  # peak RSS
        assert float(row[3]) > 0  # wall seconds


def test_a_failed_step_stops_the_run_and_shows_its_stderr(isolated_services, tmp_path):
    # compute-features before ingest: an empty database, which the command refuses.
    result = _bench(tmp_path, "--symbols", "2", "--days", "60", "--steps", "compute-features,ingest")
    assert result.returncode == 1
    text = (tmp_path / "scale.md").read_text()
    assert [row[2] for row in _rows(text)] == ["compute-features"]
    assert "**compute-features failed at 120 bars**" in text


def test_a_kept_run_is_reused_by_the_next_with_the_same_folder(isolated_services, tmp_path):
    import json

    import psycopg
    from psycopg import sql

    kept = tmp_path / "kept"
    first = _bench(tmp_path, "--symbols", "3", "--days", "80", "--steps", "ingest", "--keep", str(kept))
    assert first.returncode == 0, first.stderr[-3000:]
    saved = json.loads((kept / "3x80" / "env.json").read_text())
    try:
        # compute-features alone succeeds only in the database the first run ingested into.
        second = _bench(tmp_path, "--symbols", "3", "--days", "80", "--steps", "compute-features", "--keep", str(kept))
        assert second.returncode == 0, second.stderr[-3000:]
        assert "reusing" in second.stderr and "generated in" not in second.stderr
    finally:
        with psycopg.connect(settings.check_postgres().conninfo(), autocommit=True) as admin:
            kept_db = sql.Identifier(saved["PGDATABASE"])
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(kept_db))


def test_the_stage_table_lists_each_steps_stages_and_what_they_leave_unmeasured():
    stages = {"read": {"seconds": 2.0, "calls": 3}, "join": {"seconds": 4.0, "calls": 3},
              "join/as-of join": {"seconds": 3.0, "calls": 3}}  # fmt: skip
    steps = [StepRun("build-dataset", "python -m training build-dataset", 100, 10.0, 1.0, 0, [], stages),
             StepRun("ingest", "python -m training ingest", 100, 1.0, 1.0, 0)]  # fmt: skip
    rows = _rows("\n".join(stage_table([SizeRun(2, 50, "u", 0.0, 0.0, steps)])))
    assert [row[2:] for row in rows] == [
        ["read ×3", "2.00", "20.0%"],
        ["join ×3", "4.00", "40.0%"],
        ["· join/as-of join ×3", "3.00", "30.0%"],  # part of join: not counted again below
        ["start-up and unmeasured", "4.00", "40.0%"],
    ]
    assert stage_table([SizeRun(2, 50, "u", 0.0, 0.0, steps[1:])]) == []  # no step timed its stages


def test_a_step_reports_where_its_time_went(isolated_services, tmp_path):
    steps = "ingest,compute-features,feast apply,build-dataset"
    result = _bench(tmp_path, "--symbols", "8", "--days", "300", "--steps", steps)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    build = json.loads((tmp_path / "scale.json").read_text())["runs"][0]["steps"][3]
    assert build["step"] == "build-dataset"
    for name in ("feast store", "read", "labels", "join", "join/as-of join", "stage rows", "weights", "write"):
        assert build["stages"][name]["seconds"] >= 0, name
    assert sum(s["seconds"] for n, s in build["stages"].items() if "/" not in n) <= build["seconds"]
    text = (tmp_path / "scale.md").read_text()
    assert "| 8 × 300 | build-dataset | join" in text
    assert "| 8 × 300 | build-dataset | start-up and unmeasured |" in text
