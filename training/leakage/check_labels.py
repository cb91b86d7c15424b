"""Labels: recompute every row's label, t1, ret and barriers from the prices with the dataset's label config.

``triple_barrier_labels`` reads only bars D+1 .. D+h after the decision D; a row whose stored outcome
differs was labelled with other bars (one too many, a later horizon) or other settings than the metadata
claims, and a row it does not return has no full horizon (its D+h does not exist): both are failures.
``next_ret`` (close D+1 / close D - 1, the backtest's return) and ``target`` (derived from the label) are
checked the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.labeling.triple_barrier import LabelParams, triple_barrier_labels
from training.leakage.panel import BarHistory, mismatch, ns
from training.leakage.result import CheckResult

NAME = "labels"
EXACT = ("t1", "label", "barrier", "target")
NUMERIC = ("ret", "upper", "lower", "next_ret")


def expected_labels(bars: BarHistory, labels: dict, target_kind: str) -> pd.DataFrame:
    """symbol, key (t0 in ns) and every label column as the config defines them."""
    frame = bars.bars
    out = triple_barrier_labels(frame, labels)
    close = frame["close"].to_numpy(dtype=np.float64)
    next_close = frame.groupby("symbol", sort=False)["close"].shift(-1).to_numpy(dtype=np.float64)
    out["key"] = ns(out.pop("t0"))
    out["t1"] = ns(out["t1"])
    out["barrier"] = out["barrier"].astype(str)
    by_bar = pd.DataFrame({"symbol": frame["symbol"].to_numpy(), "key": bars.ts, "next_ret": next_close / close - 1.0})
    out = out.merge(by_bar, on=["symbol", "key"], how="left", validate="one_to_one")
    out["target"] = (out["label"] == 1).astype(np.int64) if target_kind == "binary" else out["label"].astype(np.int64)
    return out


def check_labels(dataset: Dataset, bars: BarHistory) -> CheckResult:
    frame = dataset.frame
    config = dataset.metadata["config"]
    params = LabelParams.from_config(config["labels"])
    stored = pd.DataFrame(
        {
            "symbol": frame["symbol"].to_numpy(),
            "key": ns(frame["event_timestamp"]),
            "t1": ns(frame["t1"]),
            "label": frame["label"].to_numpy(dtype=np.int64),
            "barrier": frame["barrier"].astype(str).to_numpy(),
            "target": frame["target"].to_numpy(dtype=np.int64),
            **{c: frame[c].to_numpy(dtype=np.float64) for c in NUMERIC},
        }
    )
    expected = expected_labels(bars, config["labels"], config["target"])
    # Row of `expected` for each stored row (positions, so no column is upcast to float by a merge).
    expected["position"] = np.arange(len(expected))
    where = stored[["symbol", "key"]].merge(expected[["symbol", "key", "position"]], on=["symbol", "key"], how="left")
    no_horizon = where["position"].isna().to_numpy()
    position = where["position"].fillna(0).to_numpy(dtype=np.int64)

    offending: list[pd.DataFrame] = []
    differs = {}
    for column in (*EXACT, *NUMERIC):
        got, want = stored[column].to_numpy(), expected[column].to_numpy()[position]
        bad = mismatch(want, got) if column in NUMERIC else got != want
        bad &= ~no_horizon
        differs[column] = int(bad.sum())
        if bad.any():
            part = pd.DataFrame({"symbol": stored["symbol"].to_numpy()[bad], "key": stored["key"].to_numpy()[bad]})
            if column == "t1":
                got, want = pd.to_datetime(got, utc=True), pd.to_datetime(want, utc=True)
            part = part.assign(column=column, dataset=list(got[bad]), recomputed=list(want[bad]))
            offending.append(part.assign(problem=f"{column} differs from the recomputed label"))
    if no_horizon.any():
        part = stored.loc[no_horizon, ["symbol", "key"]].assign(column="horizon", dataset=None, recomputed=None)
        offending.append(part.assign(problem=f"no full horizon: bar D+{params.horizon} (or the entry bar) is missing"))
    table = pd.concat(offending, ignore_index=True) if offending else pd.DataFrame()
    if len(table):
        table = table.sort_values(["key", "symbol"], kind="stable")
        table.insert(1, "event_timestamp", pd.to_datetime(table.pop("key"), utc=True))
    row_keys = set(zip(table["symbol"], table["event_timestamp"], strict=True)) if len(table) else set()
    counts = {
        "rows": len(frame),
        "rows_differing": len(row_keys),
        "no_full_horizon": int(no_horizon.sum()),
        **{f"{c}_differs": n for c, n in differs.items()},
    }
    setting = (
        f"pt={params.profit_taking:g}, sl={params.stop_loss:g}, h={params.horizon}, {params.barriers} barriers, "
        f"touch={params.touch}"
    )
    return CheckResult.verdict(
        NAME,
        f"{len(frame):,} rows: label, t1, ret, barrier recomputed from prices in (t0, t1] ({setting})",
        counts,
        table,
        total=len(row_keys),
    )
