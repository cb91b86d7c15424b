"""Mutation canaries: the builder's and splitters' own code patched at run time with a known bug.

Each canary rewrites one line of the real source (or wraps one real function), builds a small dataset or
runs the cross-validation with the bug, and shows ``verify-leakage`` fails naming exactly the check that
guards against it. Most of these passed the audit while it recomputed with the builder's own code.
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

import pytest

from training.config import load_config
from training.dataset import builder
from training.dataset.artifact import Dataset
from training.dataset.offline_bars import load_bars
from training.labeling import triple_barrier
from training.leakage import BarHistory, audit_config, run_audit
from training.leakage.report import format_text
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
    return BarHistory.of(load_bars(SYMBOLS))


@pytest.fixture(scope="module")
def clean(pipeline) -> Dataset:
    return build()


def audit(dataset: Dataset, bars: BarHistory):
    return run_audit(dataset, audit_config(dataset), bars, sample=60, progress=lambda message: None)


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
    bug = mutant(builder, "build_dataset", "warmup = warmup_bars()", "warmup = warmup_bars() - 1")
    monkeypatch.setattr(builder, "build_dataset", bug)


def feature_from_the_next_bar(monkeypatch):
    """Every feature of a decision taken from the symbol's next bar, its feature_timestamp left as joined."""
    original = builder.point_in_time_features

    def next_bar(store, candidates, service):
        features = original(store, candidates, service)
        by_symbol = features[service.features].groupby(candidates["symbol"].to_numpy())
        features[service.features] = by_symbol.shift(-1)
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
