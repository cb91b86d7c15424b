"""verify-leakage on real data: the clean dataset passes every check; each leaky copy fails exactly its check.

One small dataset (three symbols from 2011, FB's warm-up included) is built once; each canary mutates a copy
of it the way a leaky builder or trainer would, re-stamping what such a builder would have written itself
(split, fingerprint) so that only the planted leak is wrong. Mutations of the builder's and splitters' own
code are in tests/test_audit_mutations.py.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import KFold

from tests.conftest import run_cli
from training.dataset import artifact
from training.dataset.artifact import Dataset
from training.dataset.offline_bars import load_bars
from training.indicators.compute import input_columns
from training.indicators.definitions import warmup_bars
from training.labeling.triple_barrier import triple_barrier_labels
from training.leakage import CHECKS, BarHistory, audit_config, run_audit
from training.leakage.audited_code import rebuild
from training.leakage.check_features import recompute
from training.leakage.ref_indicators import indicator_series
from training.leakage.report import REPORT_FILE, format_text
from training.validation.holdout_split import holdout_split
from training.validation.purged_cv import make_cv

SYMBOLS, START = "AAPL,FB,IBM", "2011-01-01"
LABEL_COLUMNS = ["t1", "label", "target", "ret", "barrier", "upper", "lower"]


@pytest.fixture(scope="module")
def clean(pipeline, tmp_path_factory) -> tuple[Path, Dataset]:
    out = tmp_path_factory.mktemp("leakage") / "clean"
    result = run_cli("build-dataset", "--out", str(out), "--symbols", SYMBOLS, "--start", START)
    assert result.exit_code == 0, result.output
    return out, artifact.load(out)


@pytest.fixture(scope="module")
def bars(clean) -> BarHistory:
    return BarHistory.of(load_bars(clean[1].metadata["symbols"]))


def audit(dataset: Dataset, bars: BarHistory, **options):
    return run_audit(dataset, audit_config(dataset), bars, progress=lambda message: None, **options)


def as_built(frame: pd.DataFrame, metadata: dict, bars: BarHistory, resplit: bool = False) -> Dataset:
    """What a (leaky) builder producing ``frame`` would have saved: its own split and fingerprint."""
    frame = frame.sort_values(["event_timestamp", "symbol"], kind="stable").reset_index(drop=True)
    meta = copy.deepcopy(metadata)
    features = meta["features"]
    if resplit:
        split = holdout_split(frame["event_timestamp"], frame["t1"], **meta["config"]["split"])
        frame["split"], meta["split"] = split.role, split.summary()
    meta["rows"] = len(frame)
    meta["fingerprint"] = artifact.fingerprint(frame, meta["config"], features)
    return Dataset(frame=frame, metadata=meta)


# --- the leaks -------------------------------------------------------------------------------------------


def feature_from_the_future(dataset: Dataset, bars: BarHistory) -> Dataset:
    """rsi_14 of every row replaced by the next bar's value."""
    frame = dataset.frame.copy()
    frame["rsi_14"] = frame.groupby("symbol")["rsi_14"].shift(-1).fillna(frame["rsi_14"])
    return as_built(frame, dataset.metadata, bars)


def join_takes_the_next_bar(dataset: Dataset, bars: BarHistory) -> Dataset:
    """feature_timestamp and every feature taken from the next bar (the last bar of a symbol has none)."""
    frame = dataset.frame.copy()
    columns = ["feature_timestamp", *dataset.features]
    later = frame.groupby("symbol")[columns].shift(-1)
    has_next = later["feature_timestamp"].notna()
    frame.loc[has_next, columns] = later.loc[has_next, columns]
    return as_built(frame[has_next], dataset.metadata, bars)


def label_one_bar_too_many(dataset: Dataset, bars: BarHistory) -> Dataset:
    """Labels of horizon h+1 while the config still says h; the split follows the leaky t1 as a builder's would."""
    config = dataset.metadata["config"]
    longer = triple_barrier_labels(bars.bars, {**config["labels"], "horizon": config["labels"]["horizon"] + 1})
    longer = longer.rename(columns={"t0": "event_timestamp"})
    longer["target"] = (longer["label"] == 1).astype(np.int8)
    frame = dataset.frame.drop(columns=LABEL_COLUMNS).merge(
        longer[["symbol", "event_timestamp", *LABEL_COLUMNS]], on=["symbol", "event_timestamp"]
    )
    return as_built(frame[dataset.frame.columns], dataset.metadata, bars, resplit=True)


def validation_right_after_the_cutoff(dataset: Dataset, bars: BarHistory) -> Dataset:
    """No embargo: the embargoed rows are validation rows."""
    frame = dataset.frame.copy()
    frame.loc[frame["split"] == "embargo", "split"] = "validation"
    return as_built(frame, dataset.metadata, bars)


def training_labels_reach_the_cutoff(dataset: Dataset, bars: BarHistory) -> Dataset:
    """No purge: the purged rows train."""
    frame = dataset.frame.copy()
    frame.loc[frame["split"] == "purged", "split"] = "train"
    return as_built(frame, dataset.metadata, bars)


def warmup_row_kept(dataset: Dataset, bars: BarHistory) -> Dataset:
    """FB's bar just before the warm-up ends kept as a sample, its features and label computed honestly."""
    start, _ = bars.span("FB")
    bar = start + warmup_bars() - 1
    t0 = bars.bars["event_timestamp"].iloc[bar]
    history = {c: bars.bars[c].to_numpy(dtype=np.float64)[start : bar + 1] for c in input_columns()}
    labels = triple_barrier_labels(bars.bars, dataset.metadata["config"]["labels"])
    label = labels[(labels["symbol"] == "FB") & (labels["t0"] == t0)].iloc[0]
    frame = dataset.frame.copy()
    row = frame[frame["symbol"] == "FB"].iloc[[0]].copy()
    row["event_timestamp"] = t0
    row["feature_timestamp"] = t0
    for column in ("t1", "label", "ret", "barrier", "upper", "lower"):
        row[column] = label[column]
    row["target"] = np.int8(label["label"] == 1)
    row["next_ret"] = bars.bars["close"].iloc[bar + 1] / bars.bars["close"].iloc[bar] - 1
    for name, value in recompute(history, dataset.features).items():
        row[name] = value
    frame = pd.concat([row.astype(frame.dtypes.to_dict()), frame], ignore_index=True)
    return as_built(frame, dataset.metadata, bars, resplit=True)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 160),
    gap=st.floats(0.0, 0.1),
)
def test_the_talib_reference_is_causal_so_one_pass_gives_every_rows_value(seed, n, gap):
    """The features check reads every row's reference from one TA-Lib pass over the symbol's history: sound
    only because each value at bar i is, bit for bit, the value on the bars cut at i (nothing after i used)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = close * (1 + rng.normal(0, 0.005, n))
    high, low = np.maximum(open_, close) * (1 + gap), np.minimum(open_, close) / (1 + gap)
    volume = rng.uniform(0, 1e6, n)  # zero volumes included: volume_change's guard
    full = indicator_series(open_, high, low, close, volume)
    for i in range(1, n + 1):
        cut = indicator_series(open_[:i], high[:i], low[:i], close[:i], volume[:i])
        for name, series in full.items():
            np.testing.assert_array_equal(series[i - 1], cut[name][-1], err_msg=f"{name} at bar {i - 1}")


# --- the audit -------------------------------------------------------------------------------------------


def test_the_clean_dataset_passes_every_check_including_a_rebuild(clean, bars):
    _, dataset = clean
    report = audit(dataset, bars, rebuild=lambda: rebuild(dataset.metadata, Path(tempfile.mkdtemp()) / "rebuilt"))
    assert [c.name for c in report.checks] == list(CHECKS)
    assert report.status == "passed", format_text(report)
    assert {c.status for c in report.checks} == {"passed"}
    features = report.check("features").counts
    assert features["rows"] == len(dataset.frame) and features["symbols"] == 3 and features["mismatched_values"] == 0
    assert features["values_compared"] == len(dataset.frame) * len(dataset.features)
    assert report.check("labels").counts["rows"] == len(dataset.frame)
    assert report.check("cv").counts["folds"] == 5
    assert report.check("warmup").counts["fewest_bars_before"] == warmup_bars()  # FB starts inside the range


@pytest.mark.parametrize(
    ("leak", "check"),
    [
        (feature_from_the_future, "features"),
        (join_takes_the_next_bar, "point_in_time"),
        (label_one_bar_too_many, "labels"),
        (validation_right_after_the_cutoff, "holdout"),
        (training_labels_reach_the_cutoff, "holdout"),
        (warmup_row_kept, "warmup"),
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_each_leak_fails_exactly_its_check(clean, bars, leak: Callable, check: str):
    leaky = leak(clean[1], bars)
    report = audit(leaky, bars)
    assert report.failed == [check], format_text(report)
    failed = report.check(check)
    assert failed.offending or failed.message
    assert report.check("reproducibility").status == "skipped"  # the stored rows still hash to their fingerprint


def test_the_failures_name_the_rows_and_what_is_wrong(clean, bars):
    report = audit(feature_from_the_future(clean[1], bars), bars)
    assert {r["feature"] for r in report.check("features").offending} == {"rsi_14"}
    report = audit(join_takes_the_next_bar(clean[1], bars), bars)
    assert report.check("point_in_time").offending[0]["problem"] == "joined bar is after the decision"
    report = audit(validation_right_after_the_cutoff(clean[1], bars), bars)
    assert {r["split"] for r in report.check("holdout").offending} == {"validation"}


@pytest.mark.parametrize(
    "splitter",
    [
        lambda cv: KFold(n_splits=cv["n_splits"]),  # contiguous folds, nothing purged
        lambda cv: make_cv({**cv, "embargo": 0.0}),  # purged, but no embargo after the test fold
    ],
    ids=["kfold_without_purge", "purged_kfold_without_embargo"],
)
def test_a_splitter_that_does_not_purge_or_embargo_fails_the_cv_check(clean, bars, splitter):
    report = audit(clean[1], bars, make_splitter=splitter)
    assert report.failed == ["cv"], format_text(report)
    assert report.check("cv").counts["failing_folds"] >= 1


def test_cpcv_from_a_config_file_is_audited_too(clean, bars, tmp_path):
    config = tmp_path / "cpcv.yaml"
    config.write_text("cv:\n  method: cpcv\n  n_splits: 4\n  cpcv_test_groups: 2\n")
    dataset = clean[1]
    report = run_audit(dataset, audit_config(dataset, config), bars, progress=lambda message: None)
    assert report.status == "passed", format_text(report)
    assert (
        report.check("cv").counts["folds"] == 6 and report.check("cv").counts["splitter"] == "CombinatorialPurgedKFold"
    )


def test_a_changed_row_breaks_the_fingerprint(clean, bars):
    _, dataset = clean
    frame = dataset.frame.copy()
    frame.loc[7, "weight"] += 0.5
    edited = Dataset(frame=frame, metadata=copy.deepcopy(dataset.metadata))  # edited after the build
    report = audit(edited, bars)
    assert report.failed == ["reproducibility"], format_text(report)
    assert "edited after the build" in report.check("reproducibility").message

    restamped = as_built(frame, dataset.metadata, bars)  # a builder whose output is not its inputs'
    report = audit(restamped, bars, rebuild=lambda: rebuild(dataset.metadata, Path(tempfile.mkdtemp()) / "rebuilt"))
    assert report.failed == ["reproducibility"], format_text(report)
    differing = report.check("reproducibility").offending
    assert [(r["column"], r["event_timestamp"]) for r in differing] == [
        ("weight", frame.loc[7, "event_timestamp"].isoformat())
    ]


# --- the command -----------------------------------------------------------------------------------------


def test_cli_passes_the_clean_dataset_and_writes_the_report_mlflow_logs(clean, tmp_path):
    folder = tmp_path / "dataset"
    shutil.copytree(clean[0], folder)  # never write into the shared clean artifact
    result = run_cli("verify-leakage", "--dataset", str(folder))
    assert result.exit_code == 0, result.output
    assert "status: passed" in result.output
    assert all(f"PASS {name}" in result.output for name in CHECKS)
    report = json.loads((folder / REPORT_FILE).read_text())
    assert report["status"] == "passed" and list(report["checks"]) == list(CHECKS)
    assert report["dataset"]["fingerprint"] == clean[1].metadata["fingerprint"]
    assert {"load_dataset", "load_bars", "total", *CHECKS} <= set(report["timings"])


def test_cli_exits_1_naming_the_failed_check(clean, bars, tmp_path):
    folder = artifact.save(validation_right_after_the_cutoff(clean[1], bars), tmp_path / "leaky")
    result = run_cli("verify-leakage", "--dataset", str(folder), "--skip-rebuild")
    assert result.exit_code == 1, result.output
    assert "FAIL holdout" in result.output and "leakage check(s) failed: holdout" in result.output
    report = json.loads((folder / REPORT_FILE).read_text())
    assert report["status"] == "failed" and report["failed_checks"] == ["holdout"]
    assert report["checks"]["holdout"]["offending_rows"]


def test_cli_rejects_a_folder_that_is_not_a_dataset(isolated_services, tmp_path):
    result = run_cli("verify-leakage", "--dataset", str(tmp_path))
    assert result.exit_code == 2
    assert "is not a dataset" in result.output
    assert not (tmp_path / REPORT_FILE).exists()
