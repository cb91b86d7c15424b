"""Does a session's cross-section still look like the rows the model was fitted on?

For each model input, a one-sample Kolmogorov-Smirnov test of the session's values (one per scored symbol)
against the training rows' distribution recorded with the model (:mod:`training.model.input_distribution`).
KS rather than a population stability index: its p-value accounts for how many symbols were scored, so a
five-symbol universe is judged as fairly as an 8,000-symbol one (a PSI over five values is large by
construction). An input drifts when p < alpha / inputs (Bonferroni over the inputs tested), alpha from the
configuration's ``monitoring.drift_alpha``. Each check can be logged as an MLflow monitoring run with a plot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.model.input_distribution import ARTIFACT


@dataclass(frozen=True)
class InputDrift:
    name: str
    statistic: float  # KS distance between the session's values and the training distribution
    p_value: float
    values: int  # finite values tested (symbols scored)


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
        tested = f"{len(self.inputs)} inputs, KS p < {self.threshold:.2g}"
        if not self.drifted:
            return f"no input drifted ({tested})"
        shown = ", ".join(f"{d.name} (KS {d.statistic:.2f}, p {d.p_value:.1e})" for d in self.drifted[:5])
        more = f" and {len(self.drifted) - 5} more" if len(self.drifted) > 5 else ""
        return f"{len(self.drifted)} input(s) drifted ({tested}): {shown}{more}"


def reference_of(model_uri: str) -> dict[str, Any] | None:
    """The input distribution recorded with the model's training run (None: trained before it was recorded)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        run_id = mlflow.models.get_model_info(model_uri).run_id
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=ARTIFACT)
    except (MlflowException, OSError):
        return None
    return json.loads(Path(local).read_text())


def _reference_cdf(percentiles: list[float], probabilities: list[float]):
    """The training rows' CDF, interpolated between percentiles; a tie takes its highest probability."""
    points, inverse = np.unique(np.asarray(percentiles, dtype=np.float64), return_inverse=True)
    levels = np.zeros(len(points))
    np.maximum.at(levels, inverse, np.asarray(probabilities, dtype=np.float64))
    return lambda x: np.interp(x, points, levels, left=0.0, right=1.0)


def check_drift(reference: dict[str, Any], session: pd.DataFrame, alpha: float) -> DriftReport:
    """KS of each input of ``session`` (one row per scored symbol) against ``reference``."""
    from scipy.stats import kstest

    results = []
    for name in session.columns:
        percentiles = reference["percentiles"].get(name)
        values = session[name].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if percentiles is None or not len(values):
            continue
        test = kstest(values, _reference_cdf(percentiles, reference["probabilities"]))
        results.append(InputDrift(name, float(test.statistic), float(test.pvalue), len(values)))
    return DriftReport(results, alpha)


def log_monitoring_run(report: DriftReport, experiment: str, tags: dict[str, str], metrics: dict[str, float]) -> str:
    """One MLflow run per checked session: each input's KS statistic and p-value, and a bar chart of them."""
    import mlflow

    from training.infra import settings
    from training.model.plots import drift_chart

    mlflow.set_tracking_uri(settings.check_mlflow())
    found = mlflow.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else mlflow.create_experiment(experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"update-{tags.get('session', '')}", tags=tags) as run:
        mlflow.log_metrics(
            {**metrics, "drifted_inputs": len(report.drifted)}
            | {f"ks/{d.name}": d.statistic for d in report.inputs}
            | {f"p/{d.name}": d.p_value for d in report.inputs}
        )
        mlflow.log_figure(drift_chart(report), "drift.png")
        return run.info.run_id
