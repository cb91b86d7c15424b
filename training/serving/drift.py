"""Does a session still look like the sessions the model was fitted on?

Symbols move together: on a day the whole market rises, every symbol's ``close_open_ratio`` sits in the
top of its training distribution at once. A session's cross-section is therefore one draw, not N independent
rows, and a test that treats it as N rows (a one-sample KS against the pooled training rows) alarms on
ordinary market days. So the unit judged is the session: for each model input, the median across the
scored symbols is placed in the distribution of the training sessions' medians, recorded with the model
(:mod:`training.model.input_distribution`). Its two-sided tail probability is the p-value; an input drifts
when p < alpha / inputs (Bonferroni over the inputs tested), alpha from ``monitoring.drift_alpha``. A
market day is a session like many in training; a feed whose volumes are suddenly ten times larger is not.

A pooled rolling window of sessions was measured and rejected: the inputs are smooth over days (20-day
averages, RSI), so a window's rows are far from independent and a KS over them alarmed on every one of the
last 250 bundled sessions (``benchmarks/drift_replay.py``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.model.input_distribution import ARTIFACT

REFERENCE_KEY = "session_medians"  # what a reference needs to judge a session (models trained before lack it)


@dataclass(frozen=True)
class InputDrift:
    name: str
    median: float  # the session's median across the scored symbols
    quantile: float  # where that median falls among the training sessions' medians (0 to 1)
    p_value: float  # two-sided: 2 * min(quantile, 1 - quantile)
    values: int  # finite values (symbols) the median is over


@dataclass(frozen=True)
class DriftReport:
    inputs: list[InputDrift]
    alpha: float

    @property
    def threshold(self) -> float:
        return self.alpha / max(len(self.inputs), 1)

    @property
    def drifted(self) -> list[InputDrift]:
        return sorted((d for d in self.inputs if d.p_value < self.threshold), key=lambda d: d.p_value)

    def summary(self) -> str:
        tested = f"{len(self.inputs)} inputs, session median vs training sessions, p < {self.threshold:.2g}"
        if not self.drifted:
            return f"no input drifted ({tested})"
        shown = ", ".join(
            f"{d.name} (median {d.median:.4g}, training-session quantile {d.quantile:.4f}, p {d.p_value:.1e})"
            for d in self.drifted[:5]
        )
        more = f" and {len(self.drifted) - 5} more" if len(self.drifted) > 5 else ""
        return f"{len(self.drifted)} input(s) drifted ({tested}): {shown}{more}"

    def to_json(self) -> str:
        return json.dumps({"alpha": self.alpha, "inputs": [asdict(d) for d in self.inputs]})

    @classmethod
    def from_json(cls, text: str) -> DriftReport:
        document = json.loads(text)
        return cls([InputDrift(**d) for d in document["inputs"]], document["alpha"])


def reference_of(model_uri: str) -> dict[str, Any] | None:
    """The input distribution recorded with the model's training run (None: trained before it was recorded).

    Raises MlflowException or OSError when MLflow itself fails; a missing artifact is None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = mlflow.models.get_model_info(model_uri).run_id
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=ARTIFACT)
    except (MlflowException, OSError):
        return None
    reference = json.loads(Path(local).read_text())
    return reference if REFERENCE_KEY in reference else None


def reference_cdf(percentiles: list[float], probabilities: list[float]):
    """The reference CDF, interpolated between percentiles; a tie takes its highest probability."""
    points, inverse = np.unique(np.asarray(percentiles, dtype=np.float64), return_inverse=True)
    levels = np.zeros(len(points))
    np.maximum.at(levels, inverse, np.asarray(probabilities, dtype=np.float64))
    return lambda x: np.interp(x, points, levels, left=0.0, right=1.0)


def check_drift(reference: dict[str, Any], session: pd.DataFrame, alpha: float) -> DriftReport:
    """Each input's median over ``session`` (one row per scored symbol) against the training sessions' medians."""
    results = []
    for name in session.columns:
        percentiles = reference[REFERENCE_KEY].get(name)
        values = session[name].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if percentiles is None or not len(values):
            continue
        median = float(np.median(values))
        quantile = float(reference_cdf(percentiles, reference["probabilities"])(median))
        results.append(InputDrift(name, median, quantile, 2.0 * min(quantile, 1.0 - quantile), len(values)))
    return DriftReport(results, alpha)


def monitoring_experiment(experiment: str) -> str:
    """The monitoring experiment's id, created when missing: proves MLflow answers and takes writes."""
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    return found.experiment_id if found else mlflow.create_experiment(experiment)


def log_monitoring_run(report: DriftReport, experiment: str, tags: dict[str, str], metrics: dict[str, float]) -> str:
    """One MLflow run per checked session: each input's quantile and p-value, and a chart of them."""
    import mlflow

    from training.model.plots import drift_chart

    with mlflow.start_run(
        experiment_id=monitoring_experiment(experiment), run_name=f"update-{tags.get('session', '')}", tags=tags
    ) as run:
        mlflow.log_metrics(
            {**metrics, "drifted_inputs": len(report.drifted)}
            | {f"quantile/{d.name}": d.quantile for d in report.inputs}
            | {f"p/{d.name}": d.p_value for d in report.inputs}
        )
        mlflow.log_figure(drift_chart(report), "drift.png")
        return run.info.run_id
