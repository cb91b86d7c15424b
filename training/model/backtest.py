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
    """Equal-weight portfolio of per-symbol positions in [-1, 1]; costs on position changes."""
    # .array keeps t0 a datetime column: to_numpy() of a tz-aware Series is an object array of Timestamps,
    # about 100 bytes a row.
    frame = pd.DataFrame({"symbol": symbol.array, "t0": t0.array, "position": position, "ret": next_ret})
    frame = frame.sort_values(["symbol", "t0"], kind="stable")
    previous = frame.groupby("symbol", sort=False, observed=True)["position"].shift(1).fillna(0.0)
    traded = (frame["position"] - previous).abs()
    frame["pnl"] = frame["position"] * frame["ret"] - traded * cost_bps / 1e4
    daily = frame.groupby("t0")["pnl"].mean().sort_index()
    equity = (1.0 + daily).cumprod()
    drawdown = float((equity / equity.cummax() - 1.0).min()) if len(equity) else 0.0
    std = float(daily.std(ddof=1)) if len(daily) > 1 else 0.0
    sharpe = float(daily.mean() / std * np.sqrt(BARS_PER_YEAR)) if std > 0 else 0.0
    return Backtest(
        daily=daily,
        sharpe=sharpe,
        max_drawdown=drawdown,
        total_return=float(equity.iloc[-1] - 1.0) if len(equity) else 0.0,
        turnover=float(traded.mean()) if len(traded) else 0.0,
    )


def information_coefficient(score: np.ndarray, realised: np.ndarray) -> float:
    """Spearman rank correlation of a score with the realised return over the label window."""
    if len(score) < 3 or np.std(score) == 0 or np.std(realised) == 0:
        return 0.0
    ranks = pd.DataFrame({"s": score, "r": realised}).rank()
    return float(np.corrcoef(ranks["s"], ranks["r"])[0, 1])
