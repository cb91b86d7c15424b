"""verify-leakage streams the dataset a symbol partition at a time, and the partitioning changes nothing.

The same rows are built twice, one symbol per part (``partition_bars=1``) and all in one part; the audit of
each (through the command, which reads each part's bars from the offline store) must give the same report:
statuses, counts, messages and offending rows, for the clean dataset and for a copy with leaks planted in
different parts (a feature from the next bar, a join to the next bar, a changed label, a NaN feature, an
embargoed row validating), whose rebuild is compared part by part against a rebuild partitioned otherwise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli
from training.config import load_config
from training.dataset import artifact
from training.dataset.artifact import METADATA_FILE, REPORT_FILE, Dataset
from training.leakage.panel import mismatch

SYMBOLS, START = ["AAPL", "FB", "IBM"], "2011-01-01"
VOLATILE = ("seconds",)


def build(folder: Path, partition_bars: int) -> Dataset:
    from datetime import date

    from training.dataset.builder import build_dataset
    from training.feast_store.repository import feature_store

    return build_dataset(load_config(None), feature_store(), folder, symbols=SYMBOLS,
                         start=date.fromisoformat(START), progress=lambda m: None,
                         partition_bars=partition_bars)  # fmt: skip


@pytest.fixture(scope="module")
def built(pipeline, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("partitions")
    return {"parts": build(root / "parts", 1).path, "one": build(root / "one", 10**9).path}


def leak(part: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Leaks planted by symbol, so that every partitioning of the rows gets the same ones."""
    frame = part.copy()
    fb = frame["symbol"] == "FB"  # every FB feature row's rsi_14 is the next bar's
    frame.loc[fb, "rsi_14"] = frame.loc[fb, "rsi_14"].shift(-1).fillna(frame.loc[fb, "rsi_14"])
    ibm = np.flatnonzero(frame["symbol"].to_numpy() == "IBM")
    if len(ibm):
        frame.loc[ibm[10], "feature_timestamp"] = frame.loc[ibm[11], "event_timestamp"]  # joined to the next bar
        frame.loc[ibm[20], features[0]] = np.nan  # a non-finite feature
        frame.loc[ibm[30], "label"] = -frame.loc[ibm[30], "label"] if frame.loc[ibm[30], "label"] else 1
    aapl = np.flatnonzero((frame["symbol"] == "AAPL").to_numpy() & (frame["split"] == "embargo").to_numpy())
    frame.loc[aapl, "split"] = "validation"  # no embargo for AAPL
    return frame


def leaky_copy(folder: Path, out: Path) -> Path:
    """``folder`` with :func:`leak` applied to each part, re-stamped as a builder that wrote it would have."""
    shutil.copytree(folder, out)
    metadata = json.loads((out / METADATA_FILE).read_text())
    for part in metadata["parts"]:
        file = out / part["file"]
        frame = pd.read_parquet(file)
        leak(frame, metadata["features"]).to_parquet(file, index=False)
    metadata["fingerprint"] = artifact.fingerprint(artifact.load(out), metadata["config"], metadata["features"])
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    return out


def audited(folder: Path, *options: str) -> dict:
    """The JSON report of ``verify-leakage`` on ``folder``, without what differs between any two runs."""
    run_cli("verify-leakage", "--dataset", str(folder), *options)
    report = json.loads((folder / REPORT_FILE).read_text())
    for check in report["checks"].values():
        check.pop("seconds")
    for key in ("path", "created_at"):
        report["dataset"].pop(key)
    for key in ("timings", "audited_at"):
        report.pop(key)
    return report


def test_the_two_datasets_hold_the_same_rows_in_one_part_per_symbol_and_in_one_part(built):
    parts, one = artifact.load(built["parts"]), artifact.load(built["one"])
    assert [p["symbols"] for p in parts.metadata["parts"]] == [[s, s] for s in SYMBOLS]
    assert len(one.metadata["parts"]) == 1
    assert parts.metadata["fingerprint"] == one.metadata["fingerprint"]


def test_a_clean_dataset_gets_the_same_report_whatever_its_partitioning(built, tmp_path):
    reports = []
    for name in ("parts", "one"):
        folder = shutil.copytree(built[name], tmp_path / name)
        reports.append(audited(folder))
    assert reports[0]["status"] == "passed", json.dumps(reports[0], indent=1)
    assert reports[0] == reports[1]
    assert (
        reports[0]["checks"]["reproducibility"]["counts"]["rebuilt_fingerprint"]
        == (artifact.load(built["one"]).metadata["fingerprint"])
    )


def test_a_leaky_dataset_gets_the_same_failures_and_rows_whatever_its_partitioning(built, tmp_path):
    reports = [audited(leaky_copy(built[name], tmp_path / name)) for name in ("parts", "one")]
    assert reports[0] == reports[1]
    report = reports[0]
    expected = ["features", "point_in_time", "labels", "holdout", "warmup", "reproducibility"]
    assert report["failed_checks"] == expected, json.dumps(report["checks"], indent=1)
    checks = report["checks"]
    # Every row is recomputed: FB's shifted rsi_14, and IBM's row joined to the next bar and its NaN feature.
    fb = artifact.load(built["one"]).frame.query("symbol == 'FB'")["rsi_14"].to_numpy()
    shifted = int(mismatch(fb[1:], fb[:-1]).sum())  # a flat day leaves RSI as it was (to the last bits)
    assert checks["features"]["counts"]["mismatched_rows"] == shifted + 2
    assert {r["symbol"] for r in checks["features"]["offending_rows"]} == {"IBM"}  # the first ones (IBM in 2011)
    assert checks["point_in_time"]["counts"]["after_decision"] == 1
    assert checks["labels"]["counts"]["label_differs"] == 1 and checks["labels"]["offending_total"] == 1
    assert checks["warmup"]["counts"]["nonfinite_values"] == 1
    assert {r["symbol"] for r in checks["holdout"]["offending_rows"]} == {"AAPL"}
    # the rebuild (one part) against the stored parts (one per symbol), compared group by group
    differing = checks["reproducibility"]
    assert differing["offending_total"] > 0 and {r["problem"] for r in differing["offending_rows"]} == {"value differs"}
