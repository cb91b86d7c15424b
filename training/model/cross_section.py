"""Cross-sectional evaluation of a score, as Qlib reports it: IC and Rank IC per date with ICIR, and a daily
top-k / bottom-k long-short portfolio with its turnover and costs.

The per-symbol backtest (:mod:`training.model.backtest`) asks whether each symbol's own signal pays; this asks
whether the score ranks the symbols of a date correctly, which is what a portfolio built across symbols uses.
Per date: IC is the Pearson correlation of the scores with the realised label returns (``ret``), Rank IC the
Spearman one; a date with fewer than 2 symbols or a constant score or return has none. ICIR = mean / std of the
daily values. The portfolio is long the k highest scores and short the k lowest, 1/(2k) of capital each
(k = min(top_k, symbols // 2) on each date), held from the decision close to the next one (``next_ret``);
turnover is the sum of absolute weight changes, and each unit traded costs ``cost_bps``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.model.backtest import BARS_PER_YEAR


@dataclass
class CrossSection:
    daily: pd.DataFrame  # per date: ic, rank_ic, long_short (after costs), turnover
    top_k: int
    cost_bps: float

    def metrics(self) -> dict[str, float]:
        ic, rank_ic = self.daily["ic"].dropna(), self.daily["rank_ic"].dropna()
        returns = self.daily["long_short"]
        std = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
        return {
            "ic_mean": _mean(ic),
            "icir": _ratio(ic),
            "rank_ic_mean": _mean(rank_ic),
            "rank_icir": _ratio(rank_ic),
            "topk_sharpe": float(returns.mean() / std * math.sqrt(BARS_PER_YEAR)) if std > 0 else 0.0,
            "topk_total_return": float((1.0 + returns).prod() - 1.0),
            "topk_turnover": float(self.daily["turnover"].mean()) if len(self.daily) else 0.0,
        }


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else float("nan")


def _ratio(values: pd.Series) -> float:
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return float(values.mean() / std) if std > 0 else float("nan")


def _correlations(frame: pd.DataFrame) -> pd.DataFrame:
    """Pearson and Spearman correlation of score and ret within each date (NaN where undefined)."""
    ranked = frame.groupby("t0")[["score", "ret"]].rank()
    out = {}
    for name, values in (("ic", frame[["score", "ret"]]), ("rank_ic", ranked)):
        x, y = values["score"], values["ret"]
        groups = frame["t0"]
        dx = x - x.groupby(groups).transform("mean")
        dy = y - y.groupby(groups).transform("mean")
        cov = (dx * dy).groupby(groups).sum()
        norm = np.sqrt((dx**2).groupby(groups).sum() * (dy**2).groupby(groups).sum())
        out[name] = (cov / norm).where(norm > 1e-12 * (1 + cov.abs()))
    return pd.DataFrame(out)


def _weights(frame: pd.DataFrame, top_k: int) -> pd.Series:
    """Each row's portfolio weight: +1/(2k) among the date's k best scores, -1/(2k) among its k worst."""
    order = frame.groupby("t0")["score"].rank(method="first")
    count = frame.groupby("t0")["score"].transform("size")
    k = np.minimum(top_k, count // 2)
    weight = np.where(order > count - k, 1.0, np.where(order <= k, -1.0, 0.0))
    return pd.Series(np.where(k > 0, weight / (2 * np.maximum(k, 1)), 0.0), index=frame.index)


def cross_section(symbol: pd.Series, t0: pd.Series, score: np.ndarray, ret: np.ndarray, next_ret: np.ndarray,
                  top_k: int, cost_bps: float) -> CrossSection:  # fmt: skip
    """IC, Rank IC and the top-k portfolio of ``score`` over rows (symbol, decision time t0).

    A symbol's previous weight is its row before (flat before its first), as the per-symbol backtest counts
    position changes; no dates x symbols matrix is formed, so memory stays a few columns of the rows."""
    frame = pd.DataFrame({"symbol": pd.factorize(np.asarray(symbol))[0], "t0": np.asarray(t0),
                          "score": np.asarray(score, float), "ret": np.asarray(ret, float),
                          "next_ret": np.asarray(next_ret, float)})  # fmt: skip
    frame = frame.sort_values(["symbol", "t0"], kind="stable").reset_index(drop=True)
    frame["weight"] = _weights(frame, top_k)
    previous = frame["weight"].shift(1, fill_value=0.0).where(frame["symbol"].diff().fillna(1) == 0, 0.0)
    traded = (frame["weight"] - previous).abs()
    by_date = frame["t0"]
    turnover = traded.groupby(by_date).sum()
    gross = (frame["weight"] * frame["next_ret"]).groupby(by_date).sum()
    daily = _correlations(frame)
    daily["turnover"] = turnover
    daily["long_short"] = gross - turnover * cost_bps / 1e4
    return CrossSection(daily.sort_index(), top_k, cost_bps)


def score_of(proba: np.ndarray, classes: list[int]) -> np.ndarray:
    """The score ranked across symbols: P(+1), minus P(-1) for a multiclass model."""
    score = proba[:, classes.index(1)]
    return score - proba[:, classes.index(-1)] if len(classes) > 2 else score


def oos_scores(folds: Sequence[Any], classes: list[int], n_rows: int) -> np.ndarray:
    """Each training row's out-of-sample score averaged over the CV folds that test it (CPCV tests a row in
    several), from each fold's ``proba`` and ``test_positions``; NaN for a row no fold tests."""
    total, count = np.zeros(n_rows), np.zeros(n_rows)
    for fold in folds:
        np.add.at(total, fold.test_positions, score_of(fold.proba, classes))
        np.add.at(count, fold.test_positions, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def of_rows(rows: pd.DataFrame, score: np.ndarray, top_k: int, cost_bps: float) -> CrossSection:
    """:func:`cross_section` of ``score`` over scored rows (symbol, event_timestamp, ret, next_ret); unscored
    (NaN) rows left out."""
    kept = np.isfinite(score)
    rows = rows[kept]
    return cross_section(rows["symbol"], rows["event_timestamp"], score[kept], rows["ret"].to_numpy(),
                         rows["next_ret"].to_numpy(), top_k, cost_bps)  # fmt: skip


def of_cv(folds: Sequence[Any], classes: list[int], rows: pd.DataFrame, top_k: int, cost_bps: float) -> CrossSection:
    """The cross-section of a CV's out-of-sample scores over its training ``rows``."""
    return of_rows(rows, oos_scores(folds, classes, len(rows)), top_k, cost_bps)


def write_artifacts(results: dict[str, CrossSection], folder: Path) -> None:
    """cross_section/: per date IC, Rank IC, portfolio return and turnover of every evaluated set, and a plot."""
    from training.model import plots

    target = folder / "cross_section"
    target.mkdir(parents=True, exist_ok=True)
    for name, result in results.items():
        result.daily.to_csv(target / f"{name}_daily.csv")
    plots.cross_section(results, target / "cross_section.png")
