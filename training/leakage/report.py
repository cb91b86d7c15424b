"""The audit's two outputs: a readable text report (one line per check) and ``leakage_report.json``.

The JSON lands in the dataset folder under the name the MLflow logger looks for, written atomically so a
crashed audit never leaves a half report that ``train`` would log as the dataset's proof.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from training.dataset.artifact import REPORT_FILE
from training.leakage.audit import AuditReport
from training.leakage.result import CheckResult

SHOWN_ROWS = 5
_MARK = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}
_HEADLINE_COUNTS = 4


def _counts(result: CheckResult) -> str:
    shown = [(k, v) for k, v in result.counts.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    return ", ".join(
        f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) else f"{k.replace('_', ' ')} {v:g}" for k, v in shown
    )


def _row(record: dict) -> str:
    return "  ".join(f"{k}={v}" for k, v in record.items() if v is not None)


def format_text(report: AuditReport, title: str = "verify-leakage") -> str:
    """One line per check (PASS/FAIL/SKIP, what, counts, seconds); failures add their message and rows."""
    meta = report.dataset
    lines = [
        f"{title} {meta['path']}: {meta['rows']:,} rows of {len(meta['symbols'])} symbol(s), "
        f"{meta['features']} features, fingerprint {str(meta['fingerprint'])[:12]}"
    ]
    width = max(len(c.name) for c in report.checks)
    for check in report.checks:
        lines.append(f"{_MARK[check.status]} {check.name:<{width}}  {check.description}  ({check.seconds:.2f} s)")
        counts = _counts(check)
        if counts:
            lines.append(f"     {' ' * width} {counts}")
        if check.status != "passed" and check.message:
            lines.append(f"     {' ' * width} {check.message}")
        if check.failed and check.offending:
            lines.append(f"     {' ' * width} first offending rows (of {check.offending_total:,}):")
            lines += [f"     {' ' * width}   {_row(r)}" for r in check.offending[:SHOWN_ROWS]]
    if report.failed:
        verdict = f"status: FAILED ({', '.join(report.failed)})"
    else:
        verdict = "status: passed" + (f" (skipped: {', '.join(report.skipped)})" if report.skipped else "")
    lines.append(f"{verdict}; {report.timings.get('total', report.timings.get('checks_total', 0.0)):.1f} s")
    return "\n".join(lines)


def write_json(report: AuditReport, folder: Path, name: str = REPORT_FILE) -> Path:
    """``folder/leakage_report.json`` (or ``name``), replaced atomically."""
    target = Path(folder) / name
    fd, staging = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(report.to_json(), handle, indent=2, allow_nan=False)
            handle.write("\n")
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return target
