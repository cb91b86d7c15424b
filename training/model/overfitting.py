"""The overfitting statistics of one training run: PSR, DSR and MinTRL of every return series, and PBO.

N, the trials behind DSR: the run's family's distinct trials in the trial registry
(:mod:`training.model.trials`), raised, never lowered, by ``train --trials``.

V[SR] across trials: the null's sampling variance of a Sharpe ratio of the series' own length T, 1/(T-1)
(:func:`training.model.validity.null_sharpe_variance`), for the hold-out and for each CV path alike. It is
not estimated from the trials' logged Sharpe ratios: from a handful of them that estimate swings by orders
of magnitude (DSR was not monotone in N), and Sharpe ratios of other series with another T are another
statistic. So, for fixed returns, DSR never rises when a trial is added.

PBO: CSCV over the configurations tried in the family (each finished trial's out-of-sample CV returns,
the newest attempt of each, on their common dates), computed only from :data:`MIN_PBO_CONFIGURATIONS` of
them, else "n/a" with the reason: on pure noise PBO's spread over data sets (standard deviation) is 0.30
with 2 configurations, 0.26 with 4, 0.23 with 8 and levels off there (0.21 with 12, 0.22 with 16), so
from 8 on more configurations stop making it more precise (docs/backtest-statistics.md). One
configuration's CPCV paths are not configurations: no selection happened among them, so they give no PBO.
Logged with its spread: the quantiles of the logits over the CSCV combinations.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.model.backtest import BARS_PER_YEAR
from training.model.trainer import TrainingReport
from training.model.trials import Trial
from training.model.validity import Moments, dsr, min_track_record, pbo_cscv, psr

PATH_RETURNS = "validity/cv_path_returns.csv"
MIN_PBO_CONFIGURATIONS = 8
PBO_PARTITIONS = 16
LOGIT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
VARIANCE_SOURCE = "1/(T-1): a skill-less Sharpe ratio's sampling variance over the series' own T"


@dataclass
class Assessment:
    trials: int
    trials_source: str
    holdout: dict[str, float]
    paths: dict[str, float]
    pbo: dict[str, Any]
    path_sharpes: list[float] = field(default_factory=list)
    logits: np.ndarray = field(repr=False, default_factory=lambda: np.array([]))

    def metrics(self) -> dict[str, float]:
        out = {"validity/trials": float(self.trials), "validity/pbo": float(self.pbo["pbo"]),
               "validity/pbo_configurations": float(self.pbo["configurations"])}  # fmt: skip
        out.update({f"validity/pbo_{k}": v for k, v in self.pbo.get("logits", {}).items()})
        out.update({f"validity/holdout_{k}": v for k, v in self.holdout.items()})
        out.update({f"validity/cv_{k}": v for k, v in self.paths.items()})
        return {k: float(v) for k, v in out.items() if isinstance(v, int | float) and math.isfinite(float(v))}

    def to_json(self) -> dict[str, Any]:
        return {"trials": self.trials, "trials_source": self.trials_source, "variance_source": VARIANCE_SOURCE,
                "holdout": self.holdout, "cv_paths": self.paths, "pbo": self.pbo,
                "path_sharpes": self.path_sharpes}  # fmt: skip

    def summary(self) -> str:
        h, p = self.holdout, self.paths
        years = h["min_trl_bars"] / BARS_PER_YEAR
        return (
            f"  validity: N = {self.trials} trial(s) ({self.trials_source})\n"
            f"            hold-out PSR {h['psr']:.3f}, DSR {h['dsr']:.3f}, MinTRL {h['min_trl_bars']:.0f} bars "
            f"({years:.1f} years) vs {h['bars']:.0f} observed\n"
            f"            CV paths ({p['paths']:.0f}): Sharpe {p['sharpe_mean']:.2f}, PSR {p['psr_mean']:.3f}, "
            f"DSR {p['dsr_mean']:.3f}\n"
            f"            PBO {describe_pbo(self.pbo)}"
        )


def describe_pbo(pbo: dict[str, Any]) -> str:
    if not math.isfinite(pbo["pbo"]):
        return f"n/a: {pbo['reason']}"
    q = pbo["logits"]
    return (
        f"{pbo['pbo']:.2f} over {pbo['configurations']} configurations ({pbo['combinations']:,} CSCV combinations; "
        f"logit median {q['logit_q50']:.2f}, 5-95 % {q['logit_q05']:.2f} to {q['logit_q95']:.2f})"
    )


def _stats(returns: pd.Series, trials: int) -> dict[str, float]:
    """PSR, DSR (V[SR] the null's for this series' own T) and MinTRL of one return series."""
    m = Moments.of(returns.to_numpy())
    trl = min_track_record(m)
    return {"bars": float(m.n), "sharpe": m.sharpe, "sharpe_annual": m.sharpe * math.sqrt(BARS_PER_YEAR),
            "skew": m.skew, "kurtosis": m.kurtosis, "psr": psr(m), "dsr": dsr(m, trials),
            "min_trl_bars": trl}  # fmt: skip


def _configurations(tried: dict[str, str], mine: str, own: pd.Series) -> pd.DataFrame:
    """OOS CV returns (mean over paths) of every configuration tried in the family, this one's own."""
    from training.infra.mlflow_download import download_artifact

    columns = {mine: own}
    for key, run_id in tried.items():
        try:
            local = download_artifact(run_id, PATH_RETURNS)  # no progress bar per earlier trial on stderr
        except Exception:  # a run whose artifacts were deleted: nothing to compare against
            continue
        paths = pd.read_csv(local, index_col=0)
        paths.index = pd.to_datetime(paths.index, utc=True, format="ISO8601")
        columns[key] = paths.mean(axis=1)
    return pd.DataFrame(columns).dropna()


def pbo_of(configurations: pd.DataFrame) -> tuple[dict[str, Any], np.ndarray]:
    """PBO by CSCV with its spread over the combinations, or NaN with the reason it means nothing here."""
    n, dates = configurations.shape[1], len(configurations)
    base = {"pbo": float("nan"), "configurations": n, "dates": dates}
    if n < MIN_PBO_CONFIGURATIONS:
        reason = (f"{n} configuration(s) tried in this family, PBO needs at least {MIN_PBO_CONFIGURATIONS} "
                  "(fewer give the in-sample winner too few ranks to tell overfitting from noise)")  # fmt: skip
        return base | {"reason": reason}, np.array([])
    if dates < 2 * PBO_PARTITIONS:
        reason = f"the {n} configurations share {dates} dates, fewer than {2 * PBO_PARTITIONS} for CSCV's blocks"
        return base | {"reason": reason}, np.array([])
    result = pbo_cscv(configurations.to_numpy(), partitions=PBO_PARTITIONS, basis=f"{n} configurations tried")
    quantiles = np.quantile(result.logits, LOGIT_QUANTILES)
    spread = {f"logit_q{round(q * 100):02d}": float(v) for q, v in zip(LOGIT_QUANTILES, quantiles, strict=True)}
    spread |= {"logit_mean": float(result.logits.mean()), "logit_std": float(result.logits.std())}
    return base | result.to_json() | {"logits": spread}, result.logits


def assess(report: TrainingReport, trial: Trial) -> Assessment:
    """PSR, DSR, MinTRL of the hold-out and of every CV path (each with its own T); PBO over configurations."""
    n_trials, source = trial.resolve()
    holdout = _stats(report.holdout_backtest.daily, n_trials)
    per_path = [_stats(report.path_returns[c].dropna(), n_trials) for c in report.path_returns]
    paths = {"paths": float(len(per_path))}
    for key in ("sharpe_annual", "psr", "dsr"):
        values = np.array([p[key] for p in per_path], dtype=np.float64)
        paths[f"{key.replace('_annual', '')}_mean"] = float(np.nanmean(values)) if len(values) else float("nan")
        paths[f"{key.replace('_annual', '')}_min"] = float(np.nanmin(values)) if len(values) else float("nan")
    configurations = _configurations(trial.tried_runs(), trial.key, report.path_returns.mean(axis=1))
    pbo, logits = pbo_of(configurations)
    return Assessment(n_trials, source, holdout, paths, pbo, [p["sharpe_annual"] for p in per_path], logits)


def deflate(returns: dict[str, pd.Series], trial: Trial) -> dict[str, Any]:
    """PSR, DSR (deflated by the trial's family's N) and MinTRL of each named return series, and PBO over the
    family's configurations from the ``cv`` series: what a run other than train (meta-label) reports."""
    n_trials, source = trial.resolve()
    pbo, _ = pbo_of(_configurations(trial.tried_runs(), trial.key, returns["cv"]))
    stats = {name: _stats(series, n_trials) for name, series in returns.items()}
    return {"trials": n_trials, "trials_source": source, "variance_source": VARIANCE_SOURCE, **stats, "pbo": pbo}


def write_artifacts(assessment: Assessment, report: TrainingReport, folder: Path) -> None:
    """validity/: the statistics (JSON), the OOS path returns later runs compare against, the two plots."""
    from training.model import plots

    target = folder / "validity"
    target.mkdir(parents=True, exist_ok=True)
    (target / "validity.json").write_text(json.dumps(assessment.to_json(), indent=2, default=float) + "\n")
    report.path_returns.to_csv(target / Path(PATH_RETURNS).name)
    pbo = float(assessment.pbo["pbo"])
    basis = assessment.pbo.get("basis") or assessment.pbo["reason"]
    plots.pbo_logits(assessment.logits, pbo, basis, target / "pbo_logits.png")
    plots.path_sharpes(assessment.path_sharpes, report.holdout_backtest.sharpe, target / "path_sharpes.png")
