"""Labels: recompute every row's label, t1, ret, barriers and next_ret with the audit's own per-event loop.

:mod:`training.leakage.ref_labels` reads only bars D+1 .. D+h after the decision D and shares no code with
the builder's vectorised labeller; a row whose stored outcome differs was labelled with other bars (one too
many, one too few) or other settings than the metadata claims, and a row it does not return has no full
horizon (its D+h does not exist): both are failures. ``target`` (derived from the label) is checked too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.dataset.artifact import Dataset
from training.leakage.panel import BarHistory, mismatch, ns
from training.leakage.ref_labels import DEFAULTS, label_symbol
from training.leakage.result import CheckResult
from training.leakage.stream import Bars, Offending, add_counts, run_one

NAME = "labels"
EXACT = ("t1", "label", "barrier", "target")
NUMERIC = ("ret", "upper", "lower", "next_ret")
# What the reference returns per decision, and as what it is compared.
LABELLED = {"t0": np.int64, "t1": np.int64, "label": np.int64, "barrier": object, "ret": np.float64,
            "upper": np.float64, "lower": np.float64, "next_ret": np.float64}  # fmt: skip


def expected_labels(bars: BarHistory, symbols: list[str], labels: dict, target_kind: str) -> pd.DataFrame:
    """symbol, key (t0 in ns) and every label column, per the reference loop, for ``symbols``."""
    parts = []
    for symbol in symbols:
        start, end = bars.span(symbol)
        frame = bars.bars.iloc[start:end]
        price = {c: frame[c].to_numpy(dtype=np.float64) for c in ("high", "low", "close")}
        rows = label_symbol(bars.ts[start:end], price["high"], price["low"], price["close"], labels)
        columns = {c: np.fromiter((row[c] for row in rows), dtype, count=len(rows)) for c, dtype in LABELLED.items()}
        parts.append(pd.DataFrame(columns).assign(symbol=symbol))
    out = pd.concat(parts, ignore_index=True).rename(columns={"t0": "key"})
    out["key"], out["t1"] = out["key"].astype(np.int64), out["t1"].astype(np.int64)
    out["label"] = out["label"].astype(np.int64)
    out["target"] = (out["label"] == 1).astype(np.int64) if target_kind == "binary" else out["label"]
    return out


class LabelScan:
    name = NAME
    columns = ("symbol", "event_timestamp", "t1", "label", "barrier", "target", *NUMERIC)

    def __init__(self, dataset: Dataset) -> None:
        config = dataset.metadata["config"]
        self.labels, self.target = config["labels"], config["target"]
        self.params = {**DEFAULTS, **config["labels"]}
        self.offending = Offending(["event_timestamp", "symbol"])
        self.counts: dict[str, int] = {"rows": 0, "rows_differing": 0, "no_full_horizon": 0,
                                       **{f"{c}_differs": 0 for c in (*EXACT, *NUMERIC)}}  # fmt: skip

    def add(self, frame: pd.DataFrame, bars: BarHistory) -> None:
        stored = pd.DataFrame(
            {
                "symbol": frame["symbol"].astype(str).to_numpy(),
                "key": ns(frame["event_timestamp"]),
                "t1": ns(frame["t1"]),
                "label": frame["label"].to_numpy(dtype=np.int64),
                "barrier": frame["barrier"].astype(str).to_numpy(),
                "target": frame["target"].to_numpy(dtype=np.int64),
                **{c: frame[c].to_numpy(dtype=np.float64) for c in NUMERIC},
            }
        )
        expected = expected_labels(bars, sorted(stored["symbol"].unique()), self.labels, self.target)
        expected["position"] = np.arange(len(expected))
        where = stored[["symbol", "key"]].merge(expected[["symbol", "key", "position"]], on=["symbol", "key"],
                                                how="left")  # fmt: skip
        no_horizon = where["position"].isna().to_numpy()
        position = where["position"].fillna(0).to_numpy(dtype=np.int64)

        offending: list[pd.DataFrame] = []
        differs = {}
        for column in (*EXACT, *NUMERIC):
            got, want = stored[column].to_numpy(), expected[column].to_numpy()[position]
            bad = mismatch(want, got) if column in NUMERIC else got != want
            bad &= ~no_horizon
            differs[f"{column}_differs"] = int(bad.sum())
            if bad.any():
                part = pd.DataFrame({"symbol": stored["symbol"].to_numpy()[bad], "key": stored["key"].to_numpy()[bad]})
                if column == "t1":
                    got, want = pd.to_datetime(got, utc=True), pd.to_datetime(want, utc=True)
                part = part.assign(column=column, dataset=list(got[bad]), recomputed=list(want[bad]))
                offending.append(part.assign(problem=f"{column} differs from the recomputed label"))
        if no_horizon.any():
            part = stored.loc[no_horizon, ["symbol", "key"]].assign(column="horizon", dataset=None, recomputed=None)
            problem = f"no full horizon: bar D+{self.params['horizon']} (or the entry bar) is missing"
            offending.append(part.assign(problem=problem))
        table = pd.concat(offending, ignore_index=True) if offending else pd.DataFrame()
        if len(table):
            table = table.sort_values(["key", "symbol"], kind="stable")
            table.insert(1, "event_timestamp", pd.to_datetime(table.pop("key"), utc=True))
        rows_differing = len(set(zip(table["symbol"], table["event_timestamp"], strict=True))) if len(table) else 0
        self.offending.add(table, rows_differing)
        add_counts(self.counts, {"rows": len(frame), "rows_differing": rows_differing,
                                 "no_full_horizon": no_horizon.sum(), **differs})  # fmt: skip

    def result(self) -> CheckResult:
        params = self.params
        setting = (
            f"pt={params['profit_taking']:g}, sl={params['stop_loss']:g}, h={params['horizon']}, "
            f"{params['barriers']} barriers, touch={params['touch']}"
        )
        return CheckResult.verdict(
            NAME,
            f"{self.counts['rows']:,} rows: label, t1, ret, barrier recomputed by a per-event loop over (t0, t1] "
            f"({setting})",
            dict(self.counts),
            self.offending.table(),
            total=self.offending.total,
        )


def check_labels(dataset: Dataset, bars: Bars) -> CheckResult:
    return run_one(dataset, bars, LabelScan(dataset))
