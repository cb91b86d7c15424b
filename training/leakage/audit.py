"""Run every leakage check on a dataset and collect one report (status, per-check results, timings).

Every check runs even after one fails, so a reviewer sees all violations at once; a check that cannot
run (missing metadata, unreadable bars) counts as failed — an audit that could not look proves nothing.
The folds audited are the configured splitter's, made as ``train`` makes them, or, given a training
run's record (``verify-leakage --run``), the folds that run used, audited with the preprocessing it
fitted in each (the ``preprocessing`` check, run-mode only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.config import DATASET_SECTIONS, Config, load_config
from training.dataset.artifact import Dataset
from training.leakage import (
    audited_code,
    check_cv,
    check_decision_time,
    check_features,
    check_holdout,
    check_labels,
    check_point_in_time,
    check_preprocessing,
    check_reproducibility,
    check_warmup,
)
from training.leakage.check_preprocessing import recorded_positions
from training.leakage.result import CheckResult
from training.leakage.stream import FAILURES, Bars, could_not_run, run_scans, symbol_counts

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

CHECKS = (
    check_features.NAME,
    check_point_in_time.NAME,
    check_decision_time.NAME,
    check_labels.NAME,
    check_holdout.NAME,
    check_cv.NAME,
    check_warmup.NAME,
    check_reproducibility.NAME,
)
RUN_CHECKS = (*CHECKS, check_preprocessing.NAME)  # with a training run's record
SplitterFactory = Callable[[Mapping[str, Any]], Any]


def audit_config(dataset: Dataset, config_path: Path | None = None) -> Config:
    """The configuration ``train --config FILE`` will use on this dataset: the file (or defaults) for
    cross-validation and the model, the dataset's own sections for everything the rows were built with."""
    built = dataset.metadata["config"]
    return load_config(config_path).with_sections({section: built[section] for section in DATASET_SECTIONS})


@dataclass
class AuditReport:
    dataset: dict[str, Any]
    config: dict[str, Any]
    checks: list[CheckResult]
    timings: dict[str, float] = field(default_factory=dict)
    audited_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.failed]

    @property
    def skipped(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "skipped"]

    @property
    def status(self) -> str:
        return "failed" if self.failed else "passed"

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "failed_checks": self.failed,
            "skipped_checks": self.skipped,
            "audited_at": self.audited_at,
            "dataset": self.dataset,
            "config": self.config,
            "checks": {c.name: c.to_json() for c in self.checks},
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _describe(dataset: Dataset, path: Path | None, symbols: list[str]) -> dict[str, Any]:
    meta = dataset.metadata
    return {
        "path": str(path) if path else None,
        "fingerprint": meta.get("fingerprint"),
        "created_at": meta.get("created_at"),
        "rows": dataset.n_rows,
        "symbols": symbols,
        "feature_service": meta.get("feature_service"),
        "features": len(dataset.features),
    }


def _run(name: str, run: Callable[[], CheckResult]) -> CheckResult:
    started = time.perf_counter()
    try:
        result = run()
    except FAILURES as error:
        result = could_not_run(name, str(error))
    result.seconds = time.perf_counter() - started
    return result


def _recorded_folds_check(dataset: Dataset, record: Mapping[str, Any], frame=None) -> CheckResult:
    """The cv check of the folds a run recorded, purge and embargo as it fitted them."""
    folds = ((recorded_positions(f["train"]), recorded_positions(f["test"])) for f in record["folds"])
    label = f"run {record.get('run_id', '?')}'s recorded folds"
    return check_cv.check_cv(dataset, record["cv"], folds, label, frame=frame)


def audit_training_run(
    dataset: Dataset, record: Mapping[str, Any], path: Path | None = None, progress: Progress = log.info
) -> AuditReport:
    """The run checks alone: a training run's recorded folds (``cv``) and the preprocessing it fitted in each
    (``preprocessing``), every fold and the final fit. What ``train`` runs on its own run before promotion;
    the dataset's own checks are the dataset report's (``train`` refuses a dataset without one)."""
    started = time.perf_counter()
    steps: dict[str, Callable[[], CheckResult]] = {
        check_cv.NAME: lambda: _recorded_folds_check(dataset, record),
        check_preprocessing.NAME: lambda: check_preprocessing.check_preprocessing(dataset, record),
    }
    results = []
    for name, step in steps.items():
        progress(f"{name} of run {record.get('run_id', '?')} ...")
        results.append(_run(name, step))
    timings = {c.name: c.seconds for c in results}
    timings["total"] = time.perf_counter() - started
    used = {"cv": dict(record["cv"]), "run_id": record.get("run_id")}
    return AuditReport(dataset=_describe(dataset, path, list(dataset.metadata.get("symbols") or [])), config=used,
                       checks=results, timings=timings)  # fmt: skip


def run_audit(
    dataset: Dataset,
    config: Config,
    bars: Bars,
    *,
    rebuild: Callable[[], Dataset] | None = None,
    make_splitter: SplitterFactory | None = None,
    record: Mapping[str, Any] | None = None,
    path: Path | None = None,
    progress: Progress = log.info,
) -> AuditReport:
    """All checks on ``dataset`` against ``bars`` (its symbols' adjusted OHLCV: a :class:`BarHistory`, or a
    function giving the bars of a partition's symbols); ``rebuild=None`` skips the rebuild half of the
    reproducibility check. ``config`` supplies the cross-validation to audit; ``record`` (a run's
    ``cv_splits.json``) audits that run's folds and fitted preprocessing instead; ``make_splitter`` audits
    another splitter (a test's leaky one).

    The per-row checks (features, point-in-time, decision time, labels, warm-up) run together, one symbol
    partition (a part of the artifact, with its symbols' bars) at a time; the hold-out and cross-validation
    checks read four columns of every row; the reproducibility check hashes the rows a part at a time."""
    cv_config: Mapping[str, Any] = record["cv"] if record is not None else config.cv.model_dump()

    def cv_check() -> CheckResult:
        frame = check_cv.read_fold_columns(dataset)  # read once for the folds and their check
        if record is not None:
            return _recorded_folds_check(dataset, record, frame)
        if make_splitter is not None:
            name, folds = audited_code.splitter_folds(dataset, make_splitter(cv_config), frame)
        else:
            name, folds = audited_code.configured_folds(dataset, cv_config, frame)
        return check_cv.check_cv(dataset, cv_config, folds, name, frame=frame)

    started = time.perf_counter()
    counts = symbol_counts(dataset)
    scans = [
        check_features.FeatureScan(dataset),
        check_point_in_time.PointInTimeScan(dataset),
        check_decision_time.DecisionTimeScan(dataset),
        check_labels.LabelScan(dataset),
        check_warmup.WarmupScan(dataset),
    ]
    streamed, stream_seconds = run_scans(dataset, bars, scans, progress)
    steps: dict[str, Callable[[], CheckResult]] = {
        check_holdout.NAME: lambda: check_holdout.check_holdout(dataset),
        check_cv.NAME: cv_check,
        check_reproducibility.NAME: lambda: check_reproducibility.check_reproducibility(dataset, rebuild),
    }
    if record is not None:
        steps[check_preprocessing.NAME] = lambda: check_preprocessing.check_preprocessing(dataset, record)
    results = []
    for name in RUN_CHECKS if record is not None else CHECKS:
        if name in streamed:
            results.append(streamed[name])
            continue
        if name == check_reproducibility.NAME and rebuild is not None:
            progress(f"{name}: rebuilding the dataset from the same inputs (the slow step)")
        else:
            progress(f"{name} ...")
        results.append(_run(name, steps[name]))
    timings = {"load_bars": stream_seconds["load_bars"], **{c.name: c.seconds for c in results}}
    timings["checks_total"] = time.perf_counter() - started - stream_seconds["load_bars"]
    used = {
        "cv": dict(cv_config),
        "split": config.split.model_dump(),
        "labels": config.labels.model_dump(),
    }
    if record is not None:
        used["run_id"] = record.get("run_id")
    return AuditReport(dataset=_describe(dataset, path, list(counts)), config=used, checks=results, timings=timings)
