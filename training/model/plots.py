"""PNG figures of a training run (feature importance, ROC, confusion matrix, equity curves, the cross-section),
of the research commands (importance, meta-labeling) and of a monitoring run (drift of the inputs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from training.model.cross_section import CrossSection
    from training.model.trainer import TrainingReport


def _figure(width: float = 7.0, height: float = 4.5, columns: int = 1, rows: int = 1, **layout: Any):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(rows, columns, figsize=(width, height), dpi=110, **layout)


def _saved(plt, fig, path: Path, title: str | None = None) -> Path:
    """Lay out, write and release a figure (pyplot keeps every open figure alive until it is closed)."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def feature_importance(importance: pd.DataFrame, path: Path) -> Path:
    plt, fig, ax = _figure(7.0, 0.28 * len(importance) + 1.2)
    ordered = importance.sort_values("gain")
    ax.barh(ordered["feature"], ordered["gain"], color="#3b6ea8")
    ax.set_xlabel("total gain")
    ax.set_title("Feature importance of the final model")
    return _saved(plt, fig, path)


IMPORTANCE_TITLES = {
    "mdi": "MDI: share of gain (in-sample)",
    "mda": "MDA: log-loss rise when permuted",
    "sfi": "SFI: log-loss gain of the feature alone",
    "clustered_mda": "Clustered MDA: cluster permuted",
}


def importance_methods(frames: dict[str, pd.DataFrame], path: Path) -> Path:
    """One panel per method: mean over the purged folds, the bar's whisker one standard deviation."""
    rows = max(len(frame) for frame in frames.values())
    plt, fig, axes = _figure(5.0 * len(frames), 0.28 * rows + 1.6, columns=len(frames))
    for ax, (method, frame) in zip(np.atleast_1d(axes), frames.items(), strict=True):
        ordered = frame.sort_values("mean")
        ax.barh([str(name) for name in ordered.index], ordered["mean"], xerr=ordered["std"], color="#3b6ea8",
                ecolor="#888888")  # fmt: skip
        ax.axvline(0.0, color="black", linewidth=0.6)
        ax.set_title(IMPORTANCE_TITLES.get(method, method), fontsize=9)
        ax.tick_params(labelsize=7)
    return _saved(plt, fig, path, "Feature importance under purged CV (mean ± std over folds)")


def meta_equity(curves: dict[str, pd.DataFrame], path: Path) -> Path:
    """Per evaluation (CV path, hold-out) the equity of the unsized primary, the kept bets and the sized bets."""
    plt, fig, axes = _figure(6.0 * len(curves), 4.0, columns=len(curves))
    for ax, (title, daily) in zip(np.atleast_1d(axes), curves.items(), strict=True):
        for column in daily:
            ax.plot((1.0 + daily[column].fillna(0.0)).cumprod(), label=column, linewidth=1.0)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
        ax.tick_params(labelsize=7)
    return _saved(plt, fig, path, "Meta-labeling: growth of 1 (after costs)")


def roc(report: TrainingReport, path: Path) -> Path:
    from sklearn.metrics import roc_curve

    plt, fig, ax = _figure(5.5, 5.0)
    positive = report.classes[-1]
    column = report.classes.index(positive)
    for fold in report.folds:
        target = (report.cv_targets[fold.test_positions] == positive).astype(int)
        if target.min() != target.max():
            fpr, tpr, _ = roc_curve(target, fold.proba[:, column])
            ax.plot(fpr, tpr, lw=1, alpha=0.5, label=f"fold {fold.index} (AUC {fold.metrics['roc_auc']:.3f})")
    holdout_target = (report.holdout_rows["target"].to_numpy() == positive).astype(int)
    fpr, tpr, _ = roc_curve(holdout_target, report.holdout_proba[:, column])
    ax.plot(fpr, tpr, lw=2.2, color="black", label=f"hold-out (AUC {report.holdout['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC of class {positive:+d}: purged CV folds and hold-out")
    ax.legend(fontsize=7, loc="lower right")
    return _saved(plt, fig, path)


def confusion(matrix: list[list[int]], classes: list[int], path: Path, title: str) -> Path:
    plt, fig, ax = _figure(4.6, 4.0)
    values = np.asarray(matrix)
    ax.imshow(values, cmap="Blues")
    for (i, j), count in np.ndenumerate(values):
        ax.text(j, i, str(count), ha="center", va="center", color="black")
    ax.set_xticks(range(len(classes)), [str(c) for c in classes])
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    return _saved(plt, fig, path)


def equity(report: TrainingReport, path: Path, cost_bps: float) -> Path:
    plt, fig, ax = _figure()
    strategy, hold = report.holdout_backtest, report.holdout_buy_and_hold
    ax.plot(strategy.equity.index, strategy.equity.to_numpy(), label=f"model signal (Sharpe {strategy.sharpe:.2f})")
    ax.plot(hold.equity.index, hold.equity.to_numpy(), label=f"buy and hold (Sharpe {hold.sharpe:.2f})", alpha=0.8)
    ax.set_title(f"Hold-out equity, equal-weight symbols, {cost_bps:g} bps per unit traded")
    ax.set_ylabel("growth of 1")
    ax.legend()
    fig.autofmt_xdate()
    return _saved(plt, fig, path)


def pbo_logits(logits: np.ndarray, pbo: float, basis: str, path: Path) -> Path:
    """CSCV's logit distribution: mass at or left of 0 is the probability of backtest overfitting."""
    plt, fig, ax = _figure()
    if len(logits):
        ax.hist(logits, bins=min(50, max(10, len(logits) // 20)), color="#3b6ea8", alpha=0.85)
    ax.axvline(0.0, color="#b03a2e", linestyle="--", label=f"PBO = {pbo:.2f}")
    ax.set_xlabel("logit of the in-sample winner's out-of-sample relative rank")
    ax.set_ylabel("combinations")
    ax.set_title(f"CSCV over {basis}" if len(logits) else f"PBO not computable: {basis}", fontsize=9)
    ax.legend()
    return _saved(plt, fig, path)


def path_sharpes(sharpes: list[float], holdout: float, path: Path) -> Path:
    """Annualised Sharpe ratio of every out-of-sample backtest path, beside the hold-out's."""
    plt, fig, ax = _figure()
    ax.hist(sharpes, bins=max(5, min(30, len(sharpes))), color="#3b6ea8", alpha=0.85, label="CV paths")
    ax.axvline(holdout, color="#b03a2e", linestyle="--", label=f"hold-out {holdout:.2f}")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("annualised Sharpe ratio")
    ax.set_ylabel("paths")
    ax.set_title("Out-of-sample Sharpe ratio by backtest path")
    ax.legend()
    return _saved(plt, fig, path)


def drift_chart(report):
    """Where each input's session median falls among the training sessions' medians (0.5: the typical
    session); drifted inputs in red, the alarm bounds dashed. Returns the figure (for ``mlflow.log_figure``),
    already detached from pyplot."""
    plt, fig, ax = _figure(7.0, 0.28 * len(report.inputs) + 1.4)
    ordered = sorted(report.inputs, key=lambda d: abs(d.quantile - 0.5))
    drifted = {d.name for d in report.drifted}
    colours = ["#b03a2e" if d.name in drifted else "#3b6ea8" for d in ordered]
    ax.barh([d.name for d in ordered], [d.quantile - 0.5 for d in ordered], left=0.5, color=colours)
    for bound in (report.threshold / 2, 1 - report.threshold / 2):
        ax.axvline(bound, color="#888888", linestyle="--", linewidth=0.8)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("quantile of the session's median among the training sessions' medians")
    ax.set_title(f"Input drift: {len(drifted)} of {len(ordered)} inputs with p < {report.threshold:.2g} (red)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def cross_section(results: dict[str, CrossSection], path: Path) -> Path:
    """Rank IC (63-bar rolling mean) and the top-k / bottom-k portfolio's growth of every evaluated set."""
    plt, fig, axes = _figure(9.0, 6.0, rows=2, sharex=True)
    for name, result in results.items():
        m = result.metrics()
        axes[0].plot(result.daily["rank_ic"].rolling(63, min_periods=10).mean(),
                     label=f"{name}: Rank IC {m['rank_ic_mean']:.3f}, ICIR {m['rank_icir']:.2f}")  # fmt: skip
        axes[1].plot((1.0 + result.daily["long_short"]).cumprod(),
                     label=f"{name}: Sharpe {m['topk_sharpe']:.2f}, turnover {m['topk_turnover']:.2f}")  # fmt: skip
    axes[0].axhline(0.0, color="grey", lw=0.5)
    axes[0].set_ylabel("Rank IC (63-bar mean)")
    top_k = next(iter(results.values())).top_k if results else 0
    axes[1].set_ylabel(f"top-{top_k} / bottom-{top_k} equity")
    for ax in axes:
        ax.legend(fontsize=7)
    return _saved(plt, fig, path)
