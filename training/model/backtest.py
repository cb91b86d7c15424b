"""A cost-aware daily backtest of a signal, and the information coefficient of predictions.

At each decision bar D the signal sets a position held from D's close to D+1's close (``next_ret``, the
first bar of the label window). Symbols are equally weighted per date; every change of a symbol's
position pays ``cost_bps`` per unit traded. Daily returns are annualised over 252 bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BARS_PER_YEAR = 252


@dataclass
class Backtest:
    daily: pd.Series  # portfolio return per decision date, after costs
    sharpe: float
    max_drawdown: float
    total_return: float
    turnover: float  # mean absolute position change per symbol and bar

    @property
    def equity(self) -> pd.Series:
        return (1.0 + self.daily).cumprod()

    def metrics(self) -> dict[str, float]:
        return {
            "sharpe": self.sharpe,
            "max_drawdown": self.max_drawdown,
            "total_return": self.total_return,
            "turnover": self.turnover,
        }


def backtest(symbol: pd.Series, t0: pd.Series, position: np.ndarray, next_ret: np.ndarray, cost_bps: float) -> Backtest:
    """Equal-weight portfolio of per-symbol positions in [-1, 1]; costs on position changes.

    Rows are visited by (symbol, t0) (a stable sort), each symbol's previous position is the row before
    within the symbol (flat before its first), and a date's return is pandas' mean of its rows' P&L in that
    order: what a DataFrame sorted on both columns, ``groupby(symbol).shift`` and ``groupby(t0).mean`` give,
    in plain arrays (a training run scores all its rows' paths at once: 25M rows).
    """
    codes = pd.factorize(symbol, sort=True)[0]  # a Categorical's category order, else the values' order
    order = np.lexsort((t0.array.asi8, codes))  # lexsort is stable: ties keep their order
    codes = codes[order]
    held = np.asarray(position, dtype=np.float64)[order]
    previous = np.empty_like(held)
    previous[:1] = np.nan
    previous[1:] = held[:-1]
    previous[1:][codes[1:] != codes[:-1]] = np.nan  # a symbol's first row: flat before it
    del codes
    previous[np.isnan(previous)] = 0.0
    traded = np.abs(held - previous)
    del previous
    pnl = held * np.asarray(next_ret, dtype=np.float64)[order] - traded * cost_bps / 1e4
    del held
    dates = pd.Index(t0.array.take(order), name="t0")
    daily = pd.Series(pnl, name="pnl", copy=False).groupby(dates).mean().sort_index()
    equity = (1.0 + daily).cumprod()
    drawdown = float((equity / equity.cummax() - 1.0).min()) if len(equity) else 0.0
    std = float(daily.std(ddof=1)) if len(daily) > 1 else 0.0
    sharpe = float(daily.mean() / std * np.sqrt(BARS_PER_YEAR)) if std > 0 else 0.0
    return Backtest(
        daily=daily,
        sharpe=sharpe,
        max_drawdown=drawdown,
        total_return=float(equity.iloc[-1] - 1.0) if len(equity) else 0.0,
        turnover=float(pd.Series(traded, copy=False).mean()) if len(traded) else 0.0,
    )


def information_coefficient(score: np.ndarray, realised: np.ndarray) -> float:
    """Spearman rank correlation of a score with the realised return over the label window."""
    if len(score) < 3 or np.std(score) == 0 or np.std(realised) == 0:
        return 0.0
    ranks = pd.DataFrame({"s": score, "r": realised}).rank()
    return float(np.corrcoef(ranks["s"], ranks["r"])[0, 1])
