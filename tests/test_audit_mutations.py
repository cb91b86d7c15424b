"""Mutation canaries: the builder's, splitters', bar reader's and estimator's own code patched with a known bug.

Each canary rewrites one line of the real source (or wraps one real function), builds a small dataset, runs
the cross-validation or trains with the bug, and shows the audit fails naming exactly the check that guards
against it: ``verify-leakage`` for what the builder and splitters make, the run audit inside ``train`` for
what the trainer fits. Most of these passed the audit while it recomputed with the builder's own code (or
read bars through the builder's reader, or looked at the dataset only).
"""

from __future__ import annotations
import __future__

import inspect
import tempfile
import textwrap
from collections.abc import Callable
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.test_train import audited_copy, model_config
from training.config import load_config
from training.dataset import builder, offline_bars
from training.dataset.artifact import Dataset
from training.labeling import triple_barrier
from training.leakage import BarHistory, audit_config, run_audit
from training.leakage.bars import bar_reader
from training.leakage.report import format_text
from training.model import estimator, trainer
from training.validation import holdout_split, purged_cv

pytestmark = pytest.mark.audit_mutation
SYMBOLS, START = ["AAPL", "FB"], date(2012, 1, 1)  # FB's first bar (2012-05-18) puts its warm-up in range


def mutant(module: ModuleType, qualname: str, old: str, new: str) -> Callable:
    """The function ``module.qualname`` compiled again from its source with ``old`` (found exactly once)
    replaced by ``new``, in a copy of the module's globals: a one-line bug in the real code."""
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part)
    source = textwrap.dedent(inspect.getsource(target))
    assert source.count(old) == 1, f"{old!r} is not exactly once in {qualname}: the canary is stale"
    namespace = dict(vars(module))
    flags = __future__.annotations.compiler_flag
    exec(compile(source.replace(old, new), module.__file__, "exec", flags=flags, dont_inherit=True), namespace)
    return namespace[qualname.split(".")[-1]]


def build() -> Dataset:
    from training.feast_store.repository import feature_store

    out = Path(tempfile.mkdtemp(prefix="mutant-")) / "dataset"
    return builder.build_dataset(load_config(None), feature_store(), out, symbols=SYMBOLS, start=START,
                                 progress=lambda message: None)  # fmt: skip


@pytest.fixture(scope="module")
def bars(pipeline) -> BarHistory:
    """The stored bars as the audit reads them (its own query, not the builder's reader)."""
    with bar_reader(SYMBOLS) as read:
        return BarHistory.of(read(SYMBOLS))


@pytest.fixture(scope="module")
def clean(pipeline) -> Dataset:
    return build()


def audit(dataset: Dataset, bars: BarHistory):
    return run_audit(dataset, audit_config(dataset), bars, progress=lambda message: None)


def test_the_unmutated_code_passes(clean, bars):
    report = audit(clean, bars)
    assert report.status == "passed", format_text(report)


# --- bugs in the builder: build a dataset with the bug, audit it -------------------------------------------


def labels_look_one_bar_further(monkeypatch):
    """The builder labels with horizon h + 1 while its config says h."""
    bug = mutant(
        builder,
        "_label_and_join",
        "triple_barrier_labels(bars, labels_config)",
        'triple_barrier_labels(bars, {**labels_config, "horizon": int(labels_config["horizon"]) + 1})',
    )
    monkeypatch.setattr(builder, "_label_and_join", bug)


def t1_one_bar_early(monkeypatch):
    """The labeller reports each t1 one bar early (never before D+1): the purge then removes too little."""
    bug = mutant(triple_barrier, "triple_barrier_labels", '"t1": panel.take(bars["event_timestamp"], end)',
                 '"t1": panel.take(bars["event_timestamp"], np.maximum(end - 1, events + 1))')  # fmt: skip
    monkeypatch.setattr(builder, "triple_barrier_labels", bug)


def holdout_embargo_of_zero(monkeypatch):
    bug = mutant(holdout_split, "holdout_boundaries", "n_embargo = embargo_bars(embargo, len(calendar))",
                 "n_embargo = 0")  # fmt: skip
    monkeypatch.setattr(builder, "holdout_boundaries", bug)


def warmup_one_bar_short(monkeypatch):
    bug = mutant(builder, "_build", "warmup = warmup_bars()", "warmup = warmup_bars() - 1")
    monkeypatch.setattr(builder, "_build", bug)


def feature_from_the_next_bar(monkeypatch):
    """Every feature of a decision taken from the symbol's next bar, its feature_timestamp left as joined."""
    original = builder.point_in_time_features

    def next_bar(store, candidates, service, *rest):
        features = original(store, candidates, service, *rest)
        by_symbol = features[service.features].groupby(candidates["symbol"].to_numpy())
        features[service.features] = by_symbol.shift(-1)
        return features

    monkeypatch.setattr(builder, "point_in_time_features", next_bar)


def next_bar_value_in_twenty_rows(monkeypatch):
    """roc_1 of 20 consecutive decisions of one symbol (four weeks of FB) taken from the next bar: 20 of the
    444 rows (of the bundled 11,964, a 300-row sample of the features missed them more often than not)."""
    original = builder.point_in_time_features

    def next_bar(store, candidates, service, *rest):
        features = original(store, candidates, service, *rest)
        rows = np.flatnonzero(candidates["symbol"].to_numpy() == "FB")[40:60]
        later = features["roc_1"].groupby(candidates["symbol"].to_numpy()).shift(-1)
        features.loc[features.index[rows], "roc_1"] = later.iloc[rows].to_numpy()
        return features

    monkeypatch.setattr(builder, "point_in_time_features", next_bar)


@pytest.mark.parametrize(
    ("bug", "check"),
    [
        (labels_look_one_bar_further, "labels"),
        (t1_one_bar_early, "labels"),
        (holdout_embargo_of_zero, "holdout"),
        (warmup_one_bar_short, "warmup"),
        (feature_from_the_next_bar, "features"),
        (next_bar_value_in_twenty_rows, "features"),
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_a_builder_bug_fails_exactly_its_check(monkeypatch, bars, bug, check):
    bug(monkeypatch)
    report = audit(build(), bars)  # build() calls the patched builder
    assert report.failed == [check], format_text(report)


# --- bugs in the splitters: the trainer's folds with the bug, audited ------------------------------------------


def purge_from_t1(monkeypatch):
    """mlfinlab #295: the purge window starts at the test block's first t1 instead of its first t0."""
    bug = mutant(purged_cv, "_PurgedSplitter.split", "start, end = t0_ns[block].min(), t1_ns[block].max()",
                 "start, end = t1_ns[block].min(), t1_ns[block].max()")  # fmt: skip
    monkeypatch.setattr(purged_cv._PurgedSplitter, "split", bug)


def cv_embargo_of_zero(monkeypatch):
    bug = mutant(purged_cv, "_PurgedSplitter.split", "n_embargo = embargo_bars(self.embargo, len(calendar))",
                 "n_embargo = 0")  # fmt: skip
    monkeypatch.setattr(purged_cv._PurgedSplitter, "split", bug)


@pytest.mark.parametrize(("bug", "invariant"), [(purge_from_t1, "overlap"), (cv_embargo_of_zero, "embargo")],
                         ids=lambda value: getattr(value, "__name__", value))  # fmt: skip
def test_a_splitter_bug_fails_exactly_the_cv_check(monkeypatch, clean, bars, bug, invariant):
    bug(monkeypatch)
    report = audit(clean, bars)
    assert report.failed == ["cv"], format_text(report)
    assert {row["problem"] for row in report.check("cv").offending} == {invariant}


def test_twenty_next_bar_values_fail_verify_leakage_at_its_defaults(monkeypatch, pipeline):
    """The command as documented (no option but the dataset; the rebuild runs the same patched builder, so only
    the features check can see it): exit 1, naming the features check and the 20 rows."""
    next_bar_value_in_twenty_rows(monkeypatch)
    dataset = build()
    result = run_cli("verify-leakage", "--dataset", str(dataset.path))
    assert result.exit_code == 1, result.output
    assert "FAIL features" in result.output and "mismatched rows 20" in result.output, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"error: leakage check(s) failed: features (details in {dataset.path / 'leakage_report.json'})"
    )


# --- a bug in the builder's bar reader: the audit reads the stored bars its own way ---------------------------


def reader_shifts_the_close(monkeypatch):
    """The builder's reader hands over each bar with the next bar's close (a look-ahead in the reader alone)."""
    shifted = 'bars.assign(close=bars.groupby("symbol")["close"].shift(-1).fillna(bars["close"]))'
    bug = mutant(offline_bars, "read_bars", "    return bars\n", f"    return {shifted}\n")
    monkeypatch.setattr(offline_bars, "read_bars", bug)  # the engines' bar_reader, which the audit once used
    monkeypatch.setattr(builder, "read_bars", bug)


def test_a_wrong_bar_reader_in_the_builder_fails_the_audit_that_reads_bars_its_own_way(monkeypatch, pipeline):
    reader_shifts_the_close(monkeypatch)
    dataset = build()
    result = run_cli("verify-leakage", "--dataset", str(dataset.path), "--skip-rebuild")
    assert result.exit_code == 1, result.output  # the stored bars are right: every label is recomputed otherwise
    assert "status: FAILED (labels)" in result.output and "next ret differs" in result.output, result.output


# --- a bug in the trainer's preprocessing: the run audit inside train ------------------------------------------


def scaler_fitted_on_every_row(monkeypatch):
    """The scaler fitted on every row of X (the fold's test rows and the hold-out included), not the fit rows."""
    bug = mutant(estimator, "fit_with_early_stopping", "scaler = fit_scaler(X, _positions(rows, fit), features)",
                 "scaler = fit_scaler(X, np.arange(len(X)), features)")  # fmt: skip
    monkeypatch.setattr(trainer, "fit_with_early_stopping", bug)


def test_a_scaler_fitted_on_every_row_fails_the_run_audit_inside_train(monkeypatch, bundled_dataset, tmp_path):
    """train on a built and verified dataset: the run is logged, its audit fails preprocessing, the run is
    tagged and never promoted (this model has no champion yet, so an unaudited run would have become it)."""
    from mlflow.tracking import MlflowClient

    dataset = audited_copy(bundled_dataset[0], tmp_path / "panel")
    config = model_config(tmp_path, "scaler-canary")
    scaler_fitted_on_every_row(monkeypatch)
    result = run_cli("train", "--dataset", str(dataset), "--results", str(tmp_path / "r.json"), "--config", str(config))
    assert result.exit_code == 1, result.output
    assert "FAIL preprocessing" in result.output and "PASS cv" in result.output, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: run audit failed: preprocessing (fold 0: 23 scaler parameters differ"), last
    assert not (tmp_path / "r.json").exists()
    client = MlflowClient()
    assert client.search_model_versions("name='scaler-canary'") == []  # a refused run registers no version
    tags = client.get_run(last.rsplit("; run ", 1)[1].split()[0]).data.tags
    assert tags["leakage_check_run"] == "failed" and tags["promotion"] == "not promoted"
    assert tags["promotion_reason"] == "run audit failed: preprocessing"
