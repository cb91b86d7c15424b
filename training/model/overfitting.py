"""The overfitting statistics of one training run, with the trials counted from the MLflow experiment.

Trials: every run in the experiment on the same dataset fingerprint, this one included (``train --trials N``
overrides). V[SR] across trials: the variance of those runs' hold-out Sharpe ratios when at least two are
logged, else the sampling variance of a zero Sharpe ratio (:func:`training.model.validity.dsr`). PBO:
CSCV over the configurations tried on this dataset (each run's out-of-sample CV returns, the newest run of
each configuration), or over this run's CPCV paths when only one configuration exists; with one
configuration and one path (purged K-fold) there is nothing to select among and PBO is NaN, said so.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.config import UNHASHED_SECTIONS, Config
from training.model.backtest import BARS_PER_YEAR
from training.model.trainer import TrainingReport
from training.model.validity import PBO, Moments, dsr, min_track_record, pbo_cscv, psr

PATH_RETURNS = "validity/cv_path_returns.csv"


def config_hash(config: Config) -> str:
    """Identity of a configuration tried: everything but the MLflow names and how the model is watched."""
    kept = {k: v for k, v in config.dump().items() if k != "mlflow" and k not in UNHASHED_SECTIONS}
    body = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


@dataclass
class Assessment:
    trials: int
    trials_source: str
    variance_source: str
    holdout: dict[str, float]
    paths: dict[str, float]
    pbo: dict[str, Any]
    path_sharpes: list[float] = field(default_factory=list)
    logits: np.ndarray = field(repr=False, default_factory=lambda: np.array([]))

    def metrics(self) -> dict[str, float]:
        out = {"validity/trials": float(self.trials), "validity/pbo": float(self.pbo["pbo"])}
        out.update({f"validity/holdout_{k}": v for k, v in self.holdout.items()})
        out.update({f"validity/cv_{k}": v for k, v in self.paths.items()})
        return {k: float(v) for k, v in out.items() if isinstance(v, int | float) and math.isfinite(float(v))}

    def to_json(self) -> dict[str, Any]:
        return {"trials": self.trials, "trials_source": self.trials_source, "variance_source": self.variance_source,
                "holdout": self.holdout, "cv_paths": self.paths, "pbo": self.pbo,
                "path_sharpes": self.path_sharpes}  # fmt: skip

    def summary(self) -> str:
        h, p = self.holdout, self.paths
        years = h["min_trl_bars"] / BARS_PER_YEAR
        pbo = f"{self.pbo['pbo']:.2f}" if math.isfinite(self.pbo["pbo"]) else "n/a"
        return (
            f"  validity: hold-out PSR {h['psr']:.3f}, DSR {h['dsr']:.3f} ({self.trials} trial(s), "
            f"{self.trials_source}), MinTRL {h['min_trl_bars']:.0f} bars ({years:.1f} years) "
            f"vs {h['bars']:.0f} observed\n"
            f"            CV paths ({p['paths']:.0f}): Sharpe {p['sharpe_mean']:.2f}, PSR {p['psr_mean']:.3f}, "
            f"DSR {p['dsr_mean']:.3f}; PBO {pbo} ({self.pbo['basis']})"
        )


def _stats(returns: pd.Series, trials: int, variance: float | None) -> dict[str, float]:
    m = Moments.of(returns.to_numpy())
    trl = min_track_record(m)
    return {"bars": float(m.n), "sharpe": m.sharpe, "sharpe_annual": m.sharpe * math.sqrt(BARS_PER_YEAR),
            "skew": m.skew, "kurtosis": m.kurtosis, "psr": psr(m), "dsr": dsr(m, trials, variance),
            "min_trl_bars": trl}  # fmt: skip


def previous_runs(client: Any, experiment_id: str, fingerprint: str) -> list[Any]:
    """Runs of the experiment on the same dataset, newest first."""
    return client.search_runs([experiment_id], f"tags.dataset_fingerprint = '{fingerprint}'",
                              order_by=["attributes.start_time DESC"], max_results=5000)  # fmt: skip


def _configurations(client: Any, runs: list[Any], mine: str, own: pd.Series) -> pd.DataFrame:
    """OOS CV returns (mean over paths) of every configuration tried: the newest run of each, this one's own."""
    import mlflow

    columns = {mine: own}
    for run in runs:
        key = run.data.tags.get("config_hash")
        if not key or key in columns:
            continue
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=PATH_RETURNS)
        except Exception:
            continue
        paths = pd.read_csv(local, index_col=0)
        paths.index = pd.to_datetime(paths.index, utc=True, format="ISO8601")
        columns[key] = paths.mean(axis=1)
    return pd.DataFrame(columns).dropna()


def assess(report: TrainingReport, config: Config, client: Any, experiment_id: str, fingerprint: str,
           trials: int | None = None) -> Assessment:  # fmt: skip
    """PSR, DSR, MinTRL of the hold-out and of every CV path; PBO over configurations or CPCV paths."""
    runs = previous_runs(client, experiment_id, fingerprint)
    counted = len(runs) + 1
    n_trials, source = (trials, "--trials") if trials else (counted, "runs on this dataset in the experiment")
    sharpes = [r.data.metrics["validity/holdout_sharpe"] for r in runs if "validity/holdout_sharpe" in r.data.metrics]
    own = Moments.of(report.holdout_backtest.daily.to_numpy()).sharpe
    sharpes = [s for s in [*sharpes, own] if math.isfinite(s)]
    variance = float(np.var(sharpes, ddof=1)) if len(set(sharpes)) >= 2 else None
    variance_source = (f"variance of {len(sharpes)} logged hold-out Sharpe ratios" if variance is not None
                       else "sampling variance of a zero Sharpe ratio, 1/(T-1)")  # fmt: skip
    holdout = _stats(report.holdout_backtest.daily, n_trials, variance)
    per_path = [_stats(report.path_returns[c].dropna(), n_trials, variance) for c in report.path_returns]
    paths = {"paths": float(len(per_path))}
    for key in ("sharpe_annual", "psr", "dsr"):
        values = np.array([p[key] for p in per_path], dtype=np.float64)
        paths[f"{key.replace('_annual', '')}_mean"] = float(np.nanmean(values)) if len(values) else float("nan")
        paths[f"{key.replace('_annual', '')}_min"] = float(np.nanmin(values)) if len(values) else float("nan")
    configurations = _configurations(client, runs, config_hash(config), report.path_returns.mean(axis=1))
    result: PBO | None = None
    if configurations.shape[1] >= 2:
        result = pbo_cscv(configurations.to_numpy(), basis=f"{configurations.shape[1]} configurations tried")
    elif report.path_returns.shape[1] >= 2:
        basis = f"{report.path_returns.shape[1]} CPCV paths of the only configuration tried"
        result = pbo_cscv(report.path_returns.dropna().to_numpy(), basis=basis)
    pbo = result.to_json() if result else {
        "pbo": float("nan"), "strategies": 1, "partitions": 0, "combinations": 0,
        "basis": "one configuration, one path: nothing to select among (try another configuration or --cv cpcv)",
    }  # fmt: skip
    return Assessment(n_trials, source, variance_source, holdout, paths, pbo,
                      [p["sharpe_annual"] for p in per_path], result.logits if result else np.array([]))  # fmt: skip


def write_artifacts(assessment: Assessment, report: TrainingReport, folder: Path) -> None:
    """validity/: the statistics (JSON), the OOS path returns later runs compare against, the two plots."""
    from training.model import plots

    target = folder / "validity"
    target.mkdir(parents=True, exist_ok=True)
    (target / "validity.json").write_text(json.dumps(assessment.to_json(), indent=2, default=float) + "\n")
    report.path_returns.to_csv(target / Path(PATH_RETURNS).name)
    pbo, basis = float(assessment.pbo["pbo"]), assessment.pbo["basis"]
    plots.pbo_logits(assessment.logits, pbo, basis, target / "pbo_logits.png")
    plots.path_sharpes(assessment.path_sharpes, report.holdout_backtest.sharpe, target / "path_sharpes.png")
