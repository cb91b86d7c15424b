"""Could this backtest be luck? PSR, DSR, minimum track record length and PBO, from the papers.

No well-kept library on PyPI computes them together (mlfinlab is closed source and never shipped PBO, its
issue #382; quantstats has a PSR but no DSR, MinTRL or PBO; pypbo is not on PyPI), so each is implemented
here from its paper, with the formula in the docstring, and tested against the DSR paper's example.
Sharpe ratios are per observation (per bar, not annualised) inside these formulas, as in the papers;
callers annualise for display.

- Bailey, D. H. and López de Prado, M. (2012). "The Sharpe Ratio Efficient Frontier." Journal of Risk
  15(2). PSR (eq. 11) and MinTRL (eq. 12).
- Bailey, D. H. and López de Prado, M. (2014). "The Deflated Sharpe Ratio: Correcting for Selection Bias,
  Backtest Overfitting and Non-Normality." Journal of Portfolio Management 40(5). DSR (eqs. 1-2).
- Bailey, D. H., Borwein, J., López de Prado, M. and Zhu, Q. J. (2015/2017). "The Probability of Backtest
  Overfitting." Journal of Computational Finance 20(4). PBO via CSCV (section 2).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

EULER_GAMMA = 0.5772156649015329


@dataclass(frozen=True)
class Moments:
    """What PSR needs of a return series: length, per-period Sharpe ratio, skewness, (non-excess) kurtosis."""

    n: int
    sharpe: float
    skew: float
    kurtosis: float

    @classmethod
    def of(cls, returns: np.ndarray) -> Moments:
        r = np.asarray(returns, dtype=np.float64)
        r = r[np.isfinite(r)]
        # Constant returns (up to rounding: a spread below 1e-9 of the mean) have no Sharpe ratio.
        if len(r) < 3 or np.std(r, ddof=1) <= 1e-9 * abs(np.mean(r)):
            return cls(len(r), float("nan"), float("nan"), float("nan"))
        return cls(
            len(r),
            float(np.mean(r) / np.std(r, ddof=1)),
            float(stats.skew(r)),
            float(stats.kurtosis(r, fisher=False)),  # gamma_4 = 3 for a normal distribution
        )

    def sharpe_std(self, sharpe: float | None = None) -> float:
        """sqrt(1 - g3 SR + (g4 - 1)/4 SR^2): the non-normality factor of the SR estimator's standard error."""
        sr = self.sharpe if sharpe is None else sharpe
        return math.sqrt(max(1.0 - self.skew * sr + (self.kurtosis - 1.0) / 4.0 * sr**2, 1e-12))


def psr(m: Moments, benchmark: float = 0.0) -> float:
    """Probabilistic Sharpe Ratio (2012, eq. 11): P(true SR > SR*) given the estimate's sampling error.

    PSR(SR*) = Phi( (SR^ - SR*) sqrt(n - 1) / sqrt(1 - g3 SR^ + (g4 - 1)/4 SR^2) ).
    """
    if not math.isfinite(m.sharpe) or m.n < 2:
        return float("nan")
    return float(stats.norm.cdf((m.sharpe - benchmark) * math.sqrt(m.n - 1) / m.sharpe_std()))


def expected_max_sharpe(trials: int, variance: float) -> float:
    """SR0 (2014, eq. 2): the expected maximum of ``trials`` Sharpe ratios of skill-less strategies.

    SR0 = sqrt(V[SR_n]) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))), gamma Euler's constant.
    One trial has nothing to select among: SR0 = 0.
    """
    if trials <= 1:
        return 0.0
    z = (1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / trials) + EULER_GAMMA * stats.norm.ppf(1 - 1 / (trials * math.e))
    return float(math.sqrt(variance) * z)


def null_sharpe_variance(n: int) -> float:
    """V[SR^] of ``n`` returns when the true Sharpe ratio is 0: the sampling variance PSR's denominator uses,
    (1 - g3 SR + (g4 - 1)/4 SR^2) / (n - 1) at SR = 0, which is 1 / (n - 1) whatever the skewness and kurtosis.

    Under DSR's null every trial is skill-less, so this is how far their Sharpe ratios spread by luck alone.
    It needs no other trial's result: it holds with one trial, and cannot shrink when a trial is added.
    """
    return 1.0 / max(n - 1, 1)


def dsr(m: Moments, trials: int, variance: float | None = None) -> float:
    """Deflated Sharpe Ratio (2014, eq. 1): PSR against SR0, the best Sharpe ratio luck alone would give.

    ``variance`` is V[SR_n] over the trials (per-period units); by default the null's
    :func:`null_sharpe_variance` of ``m``'s own length, so DSR never rises when ``trials`` does.
    """
    variance = null_sharpe_variance(m.n) if variance is None else variance
    if not variance > 0:
        raise ValueError(f"V[SR] must be positive, got {variance}")
    return psr(m, expected_max_sharpe(trials, variance))


def min_track_record(m: Moments, benchmark: float = 0.0, alpha: float = 0.05) -> float:
    """Minimum track record length (2012, eq. 12): returns needed for PSR(SR*) >= 1 - alpha.

    MinTRL = 1 + (1 - g3 SR^ + (g4 - 1)/4 SR^2) (Z_{1-alpha} / (SR^ - SR*))^2; infinite when SR^ <= SR*.
    """
    if not math.isfinite(m.sharpe) or m.sharpe <= benchmark:
        return float("inf")
    return float(1 + m.sharpe_std() ** 2 * (stats.norm.ppf(1 - alpha) / (m.sharpe - benchmark)) ** 2)


@dataclass(frozen=True)
class PBO:
    """CSCV's result: PBO, the logits lambda_c of every combination, and what was compared."""

    pbo: float
    logits: np.ndarray = field(repr=False)
    strategies: int
    partitions: int
    basis: str  # what the columns are: configurations tried, or one configuration's CPCV paths

    def to_json(self) -> dict:
        return {"pbo": self.pbo, "strategies": self.strategies, "partitions": self.partitions, "basis": self.basis,
                "combinations": len(self.logits)}  # fmt: skip


def _sharpes(inside: np.ndarray, counts: np.ndarray, sums: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Sharpe ratio of every column over the blocks chosen by each row of ``inside`` (C x S booleans)."""
    chosen = inside.astype(np.float64)
    n = chosen @ counts
    mean = (chosen @ sums) / n[:, None]
    variance = ((chosen @ squares) - n[:, None] * mean**2) / (n[:, None] - 1)
    std = np.sqrt(np.maximum(variance, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(std > 0, mean / std, 0.0)


def pbo_cscv(returns: np.ndarray, partitions: int = 16, basis: str = "strategies") -> PBO:
    """Probability of Backtest Overfitting by combinatorially symmetric cross-validation (2015, section 2).

    ``returns`` is T x N (T periods, N strategies). Rows are cut into S = ``partitions`` contiguous blocks
    (S even; the first T mod S rows are dropped); for each of the C(S, S/2) choices of S/2 blocks as the
    in-sample set J (the rest J-bar out of sample): n* = argmax of the in-sample Sharpe ratios, w = rank of
    n*'s out-of-sample Sharpe among the N (1 = worst, ties share the mean rank) / (N + 1),
    lambda = ln(w / (1 - w)). PBO = #{lambda <= 0} / C(S, S/2): how often the in-sample winner lands at or
    below the out-of-sample median. All combinations at once, from per-block sums.
    """
    matrix = np.asarray(returns, dtype=np.float64)
    t, n = matrix.shape
    if n < 2:
        raise ValueError(f"PBO needs at least 2 strategies to select among, got {n}")
    s = min(partitions, t // 2 * 2)
    s -= s % 2
    if s < 2:
        raise ValueError(f"PBO needs at least 2 periods per strategy, got {t}")
    blocks = np.array_split(matrix[t % s :], s)
    counts = np.array([len(b) for b in blocks], dtype=np.float64)
    sums = np.array([b.sum(axis=0) for b in blocks])
    squares = np.array([(b**2).sum(axis=0) for b in blocks])
    inside = np.zeros((math.comb(s, s // 2), s), dtype=bool)
    for row, chosen in enumerate(itertools.combinations(range(s), s // 2)):
        inside[row, list(chosen)] = True
    best = np.argmax(_sharpes(inside, counts, sums, squares), axis=1)
    oos = _sharpes(~inside, counts, sums, squares)
    winner = oos[np.arange(len(best)), best][:, None]
    rank = (oos < winner).sum(axis=1) + ((oos == winner).sum(axis=1) + 1) / 2  # mean rank among ties
    w = rank / (n + 1)
    logits = np.log(w / (1 - w))
    return PBO(float((logits <= 0).mean()), logits, n, s, basis)
