"""The search behind ``tune``: Optuna trials, each a CPCV of one configuration on the training rows alone.

A trial draws model parameters, label settings and feature families from the configured space (a seeded TPE
sampler, so a rerun draws the same configurations), takes the dataset built with its label settings (built once
per label configuration by :class:`LabelledDatasets`, through the same builder as ``build-dataset``: labels use
only (t, t+h] and the purge uses each row's own label window), and scores the configuration by CPCV on the
``train`` rows; the hold-out rows never enter a trial's matrix. Every trial is an attempt in the trial registry
(so ``train`` counts it, and it counts ``train``) and a nested MLflow run under the search's parent run, whose
out-of-sample path returns are what PBO's CSCV later compares.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.config import DATASET_SECTIONS, Config
from training.dataset import artifact
from training.errors import InputError
from training.model.cross_section import CrossSection, of_cv
from training.model.overfitting import PATH_RETURNS
from training.model.trainer import CrossValidation, cross_validate, load_training_data, model_features
from training.model.trials import attempt
from training.search_space import Dimension, overrides

log = logging.getLogger(__name__)
MINIMISED = ("log_loss",)


def objective_of(kind: str, cv: CrossValidation, section: CrossSection) -> float:
    """What the search optimises: mean CPCV path Sharpe, mean fold ROC AUC or log loss, or mean CV Rank IC."""
    if kind == "sharpe":
        return float(np.mean(cv.path_sharpes))
    if kind == "rank_ic":
        return section.metrics()["rank_ic_mean"]
    return cv.summary[f"{kind}_mean"]


class LabelledDatasets:
    """The dataset of each label configuration: the given one for its own labels, else one built by the builder
    into ``folder`` (reused by a rerun when its recorded configuration is the one asked for)."""

    def __init__(self, base: artifact.Dataset, base_path: Path, folder: Path,
                 build: Callable[[Config, Path], artifact.Dataset]):  # fmt: skip
        self.base, self.base_path, self.folder, self.build = base, base_path, folder, build
        self._lock = threading.Lock()  # one build at a time; trials of parallel jobs wait for it

    def config_for(self, labels: dict[str, Any]) -> Config:
        """The base dataset's build configuration with these labels."""
        from training.config import load_config

        built = self.base.metadata["config"]
        return load_config().with_sections({s: built[s] for s in built if s in DATASET_SECTIONS} | {"labels": labels})

    def get(self, labels: dict[str, Any]) -> tuple[Path, artifact.Dataset]:
        if labels == self.base.metadata["config"]["labels"]:
            return self.base_path, self.base
        digest = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:12]
        path = self.folder / f"labels-{digest}"
        with self._lock:
            if (path / artifact.METADATA_FILE).exists():
                found = artifact.load(path)
                same_bars = found.metadata.get("known_at") == self.base.metadata.get("known_at")
                if found.metadata["config"]["labels"] == labels and same_bars:
                    return path, found
            return path, self.build(self.config_for(labels), path)


@dataclass
class TrialResult:
    number: int
    values: dict[str, Any]
    objective: float
    run_id: str
    dataset_path: Path
    config: Config = field(repr=False)
    cv_summary: dict[str, float] = field(repr=False)
    cross_section: dict[str, float] = field(repr=False)


@dataclass
class Search:
    """One search's fixed parts: the base configuration, the space, the datasets and the parent MLflow run."""

    config: Config
    dimensions: list[Dimension]
    datasets: LabelledDatasets
    client: Any  # MlflowClient
    experiment_id: str
    parent_run_id: str
    results: list[TrialResult] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def trial_config(self, values: dict[str, Any]) -> tuple[Config, Path, artifact.Dataset]:
        """The configuration a trial's values make, on the dataset its labels need (the dataset's sections are
        the dataset's own, as train takes them)."""
        nested = overrides(values)
        labels = self.config.labels.model_dump() | nested.get("labels", {})
        path, dataset = self.datasets.get(labels)
        built = dataset.metadata["config"]
        config = self.config.with_sections({s: built[s] for s in DATASET_SECTIONS})
        return config.with_sections({k: v for k, v in nested.items() if k != "labels"}), path, dataset

    def run_trial(self, trial: Any) -> float:
        """Optuna's objective: draw, cross-validate on the training rows, log a nested run, count the attempt."""
        values = {d.key: d.suggest(trial) for d in self.dimensions}
        config, path, dataset = self.trial_config(values)
        tune = self.config.tune
        with attempt(config, dataset.metadata) as record:
            run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial.number:03d}",
                                         tags={"mlflow.parentRunId": self.parent_run_id, **record.tags(),
                                               "trial_number": str(trial.number),
                                               "dataset_fingerprint": dataset.metadata["fingerprint"]})  # fmt: skip
            run_id = run.info.run_id
            try:
                result = self._evaluate(trial.number, values, config, path, dataset, run_id)
            except BaseException as exc:
                self.client.set_tag(run_id, "failure", f"{type(exc).__name__}: {exc}"[:5000])
                self.client.set_terminated(run_id, "FAILED")
                raise
            record.attach(run_id)
            self.client.set_terminated(run_id, "FINISHED")
        with self._lock:
            self.results.append(result)
        trial.set_user_attr("run_id", run_id)
        return result.objective if not math.isnan(result.objective) else _worst(tune.objective)

    def _evaluate(self, number: int, values: dict[str, Any], config: Config, path: Path,
                  dataset: artifact.Dataset, run_id: str) -> TrialResult:  # fmt: skip
        from mlflow.entities import Metric, Param

        features = model_features(dataset.features, config.model.feature_families)
        data = load_training_data(dataset, features, holdout=False)  # the hold-out never enters a trial
        with data.X:
            cv = cross_validate(data, config, progress=log.debug)
            section = of_cv(cv.folds, cv.classes, data.train, config.cross_section.top_k, config.backtest.cost_bps)
        objective = objective_of(config.tune.objective, cv, section)
        metrics = {f"cv/{k}": v for k, v in cv.summary.items()}
        metrics |= {f"cross_section/cv/{k}": v for k, v in section.metrics().items()}
        metrics |= {"cpcv/path_sharpe_mean": float(np.mean(cv.path_sharpes)), "objective": objective}
        params = {k: json.dumps(v) if isinstance(v, list | None) else str(v) for k, v in values.items()}
        params |= {"dataset.path": str(path), "features": str(len(features))}
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(float(v))],
            params=[Param(k, v[:6000]) for k, v in params.items()],
        )
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / Path(PATH_RETURNS).name
            cv.path_returns.to_csv(target)  # what PBO's CSCV reads back, as it reads train's
            self.client.log_artifact(run_id, str(target), str(Path(PATH_RETURNS).parent))
        return TrialResult(number, values, objective, run_id, path, config, cv.summary, section.metrics())


def _worst(objective: str) -> float:
    return float("inf") if objective in MINIMISED else float("-inf")


def direction(objective: str) -> str:
    return "minimize" if objective in MINIMISED else "maximize"


def check_space(config: Config, dimensions: list[Dimension]) -> None:
    """Every bound and choice is a valid value of its key (one line naming it), before any trial runs."""
    if not dimensions:
        raise InputError("configuration key 'tune.space' is empty: nothing to search")
    for dimension in dimensions:
        for value in dimension.extremes():
            try:
                config.with_sections(overrides({dimension.key: value}))
            except InputError as exc:
                raise InputError(f"tune.space {dimension.key} offers {value!r}: {exc}") from None
