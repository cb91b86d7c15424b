"""What one leakage check returns: passed/failed/skipped, what it looked at, and the rows that broke it.

Checks return a result instead of raising so the audit can run every check and report all failures at
once; the offending rows are kept as JSON-ready records so the report shows a reviewer *which* rows leak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import numpy as np
import pandas as pd

Status = Literal["passed", "failed", "skipped"]
REPORTED_ROWS = 20  # offending rows kept in the JSON report (the text report shows fewer)


def json_value(value: Any) -> Any:
    """A value as JSON can hold it: timestamps as ISO text, numpy scalars as Python, NaN/inf as text."""
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is pd.NaT or value is None:
        return None
    return value


def records(rows: pd.DataFrame, limit: int = REPORTED_ROWS) -> list[dict[str, Any]]:
    """The first ``limit`` rows as JSON-ready dicts."""
    return [{k: json_value(v) for k, v in row.items()} for row in rows.head(limit).to_dict("records")]


@dataclass
class CheckResult:
    """Outcome of one invariant; ``counts`` say how much was checked, ``offending`` the first bad rows."""

    name: str
    description: str
    status: Status
    counts: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    offending: list[dict[str, Any]] = field(default_factory=list)
    offending_total: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @classmethod
    def verdict(
        cls,
        name: str,
        description: str,
        counts: dict[str, Any],
        offending: pd.DataFrame | None = None,
        message: str = "",
        total: int | None = None,
    ) -> CheckResult:
        """Failed when ``offending`` has rows or a ``message`` is given, else passed."""
        bad = offending if offending is not None else pd.DataFrame()
        failed = bool(len(bad)) or bool(message)
        return cls(
            name=name,
            description=description,
            status="failed" if failed else "passed",
            counts={k: json_value(v) for k, v in counts.items()},
            message=message,
            offending=records(bad),
            offending_total=int(total if total is not None else len(bad)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "description": self.description,
            "counts": self.counts,
            "message": self.message,
            "offending_total": self.offending_total,
            "offending_rows": self.offending,
            "seconds": round(self.seconds, 3),
        }
