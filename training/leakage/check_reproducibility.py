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

NAME = "reproducibility"
KEYS = ["symbol", "event_timestamp"]


def _equal(a: pd.Series, b: pd.Series) -> np.ndarray:
    left, right = a.to_numpy(dtype=object), b.to_numpy(dtype=object)
    same = left == right
    return np.asarray(same | (pd.isna(a).to_numpy() & pd.isna(b).to_numpy()), dtype=bool)


def diff_frames(stored: pd.DataFrame, rebuilt: pd.DataFrame) -> pd.DataFrame:
    """Where two datasets differ: rows present in one only, and (row, column) values that differ."""
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
    table = pd.concat(out, ignore_index=True).sort_values(KEYS, kind="stable")
    if table.empty and not stored[KEYS].equals(rebuilt[KEYS]):
        table = pd.DataFrame([{"problem": "same rows and values in a different order"}])
    return table


def check_reproducibility(dataset: Dataset, rebuild: Callable[[], Dataset] | None = None) -> CheckResult:
    meta = dataset.metadata
    stored, hashed = meta.get("fingerprint"), artifact.fingerprint(dataset.frame, meta["config"], dataset.features)
    counts = {"rows": len(dataset.frame), "stored_fingerprint": stored, "rows_fingerprint": hashed}
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
    counts.update({"rebuilt_fingerprint": fresh, "rebuilt_rows": len(rebuilt.frame)})
    description = "a rebuild from the same inputs (config, request, offline store) gives the same fingerprint"
    if fresh == stored:
        return CheckResult.verdict(NAME, description, counts)
    table = diff_frames(dataset.frame, rebuilt.frame)
    message = f"the rebuild's fingerprint {fresh[:12]} differs from the stored {str(stored)[:12]}"
    return CheckResult.verdict(NAME, description, counts, table, message)
