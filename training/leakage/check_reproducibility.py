"""Reproducibility: the stored rows hash to the stored fingerprint, and a rebuild from the same inputs too.

The first half catches an artifact edited after its build; the second (a full rebuild through Feast with
the dataset's own configuration and request) catches a builder whose output depends on anything but its
inputs, and rows that the offline data no longer supports (the rebuild itself is
:func:`training.leakage.audited_code.rebuild`, handed in). The rebuild is the slow part and can be skipped;
the check then reports ``skipped`` unless the stored rows already fail the first half.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from training.dataset import artifact
from training.dataset.artifact import Dataset
from training.leakage.result import CheckResult
from training.leakage.stream import Offending

NAME = "reproducibility"
KEYS = ["symbol", "event_timestamp"]


def _equal(a: pd.Series, b: pd.Series) -> np.ndarray:
    left, right = a.to_numpy(dtype=object), b.to_numpy(dtype=object)
    same = left == right
    return np.asarray(same | (pd.isna(a).to_numpy() & pd.isna(b).to_numpy()), dtype=bool)


def diff_frames(stored: pd.DataFrame, rebuilt: pd.DataFrame) -> pd.DataFrame:
    """Where two sets of rows differ: rows present in one only, and (row, column) values that differ (the
    order of the rows does not matter, as it does not to the fingerprint)."""
    if list(stored.columns) != list(rebuilt.columns):
        return pd.DataFrame([{"problem": f"columns differ: {list(stored.columns)} vs {list(rebuilt.columns)}"}])
    both = stored.merge(rebuilt, on=KEYS, how="outer", suffixes=("", "_rebuilt"), indicator=True)
    out = []
    for side, where in (("left_only", "only in the stored dataset"), ("right_only", "only in the rebuild")):
        rows = both.loc[both["_merge"] == side, KEYS]
        out.append(rows.assign(problem=f"row {where}"))
    common = both[both["_merge"] == "both"]
    for column in (c for c in stored.columns if c not in KEYS):
        bad = ~_equal(common[column], common[f"{column}_rebuilt"])
        rows = common.loc[bad, [*KEYS, column, f"{column}_rebuilt"]]
        out.append(rows.set_axis([*KEYS, "stored", "rebuilt"], axis=1).assign(column=column, problem="value differs"))
    return pd.concat(out, ignore_index=True).sort_values(KEYS, kind="stable")


Range = tuple[str | None, str | None]  # symbols s with lo < s <= hi; None: unbounded


def symbol_groups(dataset: Dataset) -> list[Range]:
    """The dataset's parts as ranges of symbols that together cover every symbol: part i (whole symbols,
    [first_i, last_i]) is in (last_{i-1}, last_i], the last part's range is open above; one range when
    the dataset is in memory."""
    if dataset.path is None:
        return [(None, None)]
    lasts = [str(p["symbols"][1]) for p in dataset.metadata["parts"]]
    return [(lasts[i - 1] if i else None, lasts[i] if i < len(lasts) - 1 else None) for i in range(len(lasts))]


def rows_in(dataset: Dataset, group: Range) -> pd.DataFrame:
    """The dataset's rows whose symbol lies in ``group``, reading only the parts that can hold them."""
    lo, hi = group
    if dataset.path is None:
        frame = dataset.read()
        symbol = frame["symbol"].astype(str)
        keep = (symbol > lo if lo is not None else True) & (symbol <= hi if hi is not None else True)
        return frame[keep] if lo is not None or hi is not None else frame
    filters = ([("symbol", ">", lo)] if lo is not None else []) + ([("symbol", "<=", hi)] if hi is not None else [])
    frames = []
    for part in dataset.metadata["parts"]:
        first, last = (str(s) for s in part["symbols"])
        if (lo is not None and last <= lo) or (hi is not None and first > hi):
            continue
        frames.append(pd.read_parquet(dataset.path / part["file"], filters=filters or None))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0] if frames else pd.DataFrame()


def diff_datasets(stored: Dataset, rebuilt: Dataset) -> tuple[pd.DataFrame, int]:
    """The first differences (rows in the report's order) and how many, one group of symbols at a time: the
    stored dataset's parts, each against the rebuild's rows of the same symbols (any partitioning)."""
    found = Offending(KEYS)
    for group in symbol_groups(stored):
        mine, theirs = rows_in(stored, group), rows_in(rebuilt, group)
        if mine.empty and theirs.empty:
            continue
        if mine.empty or theirs.empty:  # no columns to compare: every row is on one side only
            side = mine if len(mine) else theirs
            where = "only in the stored dataset" if len(mine) else "only in the rebuild"
            found.add(side[KEYS].assign(problem=f"row {where}"))
            continue
        table = diff_frames(mine, theirs)
        if "symbol" not in table.columns:  # the columns differ: one message says it all
            return table, len(table)
        found.add(table)
    return found.table(), found.total


def check_reproducibility(dataset: Dataset, rebuild: Callable[[], Dataset] | None = None) -> CheckResult:
    meta = dataset.metadata
    digest = artifact.RowDigest()
    for part in dataset.parts():  # a part at a time
        digest.add(part)
    stored, hashed = meta.get("fingerprint"), digest.hexdigest(meta["config"], dataset.features)
    counts = {"rows": digest.rows, "stored_fingerprint": stored, "rows_fingerprint": hashed}
    if hashed != stored:
        return CheckResult.verdict(
            NAME,
            "the stored rows hash to the stored fingerprint",
            counts,
            message=f"the rows hash to {hashed[:12]}, the metadata says {str(stored)[:12]}: edited after the build?",
        )
    if rebuild is None:
        return CheckResult(
            name=NAME,
            description="the stored rows hash to the stored fingerprint; rebuild skipped",
            status="skipped",
            counts=counts,
            message="rebuild skipped (--skip-rebuild): only the stored rows were hashed",
        )
    rebuilt = rebuild()
    fresh = rebuilt.metadata["fingerprint"]
    counts.update({"rebuilt_fingerprint": fresh, "rebuilt_rows": rebuilt.n_rows})
    description = "a rebuild from the same inputs (config, request, offline store) gives the same fingerprint"
    if fresh == stored:
        return CheckResult.verdict(NAME, description, counts)
    table, total = diff_datasets(dataset, rebuilt)
    message = f"the rebuild's fingerprint {fresh[:12]} differs from the stored {str(stored)[:12]}"
    return CheckResult.verdict(NAME, description, counts, table, message, total=total)
