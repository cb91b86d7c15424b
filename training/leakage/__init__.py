"""The ``verify-leakage`` audit: every no-look-ahead invariant recomputed from the data, one check each.

Each check is a function ``check_*(dataset, ...) -> CheckResult`` in its own module, so tests and notebooks
can run one invariant on its own; :func:`run_audit` runs them all and :mod:`training.leakage.report` turns
the result into text and ``leakage_report.json``.
"""

from training.leakage.audit import CHECKS, AuditReport, audit_config, run_audit
from training.leakage.cv import check_cv
from training.leakage.features import check_features
from training.leakage.holdout import check_holdout
from training.leakage.labels import check_labels
from training.leakage.panel import BarHistory
from training.leakage.point_in_time import check_point_in_time
from training.leakage.reproducibility import check_reproducibility
from training.leakage.result import CheckResult
from training.leakage.scaler import check_scaler
from training.leakage.warmup import check_warmup

__all__ = [
    "CHECKS",
    "AuditReport",
    "BarHistory",
    "CheckResult",
    "audit_config",
    "check_cv",
    "check_features",
    "check_holdout",
    "check_labels",
    "check_point_in_time",
    "check_reproducibility",
    "check_scaler",
    "check_warmup",
    "run_audit",
]
