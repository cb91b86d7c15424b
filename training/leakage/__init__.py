"""The ``verify-leakage`` audit: every no-look-ahead invariant recomputed from the data, one check each.

Each check is a function ``check_*(dataset, ...) -> CheckResult`` in its own module, so tests and notebooks
can run one invariant on its own; :func:`run_audit` runs them all and :mod:`training.leakage.report` turns
the result into text and ``leakage_report.json``.
"""

from training.leakage.audit import CHECKS, AuditReport, audit_config, run_audit
from training.leakage.check_cv import check_cv
from training.leakage.check_features import check_features
from training.leakage.check_holdout import check_holdout
from training.leakage.check_labels import check_labels
from training.leakage.check_point_in_time import check_point_in_time
from training.leakage.check_reproducibility import check_reproducibility
from training.leakage.check_scaler import check_scaler
from training.leakage.check_warmup import check_warmup
from training.leakage.panel import BarHistory
from training.leakage.result import CheckResult

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
