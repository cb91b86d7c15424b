"""The ``verify-leakage`` audit: every no-look-ahead invariant recomputed from the data, one check each.

Each check is a function ``check_*(dataset, ...) -> CheckResult`` in its own module, so tests and notebooks
can run one invariant on its own; :func:`run_audit` runs them all and :mod:`training.leakage.report` turns
the result into text and ``leakage_report.json``.

Independence boundary (tests/test_audit_independence.py parses the imports to keep it): the checks and
their references (``ref_labels``: a per-event triple-barrier loop, ``ref_indicators``: direct TA-Lib calls,
``ref_splits``: the purge and embargo rules) import nothing from the code they audit: ``training.labeling``,
``training.validation``, ``training.indicators`` (except the definition table, whose names, parameters
and scale-free forms are the specification, not the computation), ``training.feast_store``,
``training.dataset`` (except the artifact reader), ``training.engines``, ``training.model`` or
``training.panels``. They may use
the artifact reader, configuration, errors and infra; the stored bars come through the audit's own reader
(:mod:`training.leakage.bars`), not the builder's. Only :mod:`training.leakage.audited_code` runs
audited code, to obtain what is judged (the trainer's folds, a rebuild), never to judge it.
"""

from training.leakage.audit import CHECKS, RUN_CHECKS, AuditReport, audit_config, run_audit
from training.leakage.check_cv import check_cv
from training.leakage.check_decision_time import check_decision_time
from training.leakage.check_features import check_features
from training.leakage.check_holdout import check_holdout
from training.leakage.check_labels import check_labels
from training.leakage.check_point_in_time import check_point_in_time
from training.leakage.check_preprocessing import check_preprocessing
from training.leakage.check_reproducibility import check_reproducibility
from training.leakage.check_warmup import check_warmup
from training.leakage.panel import BarHistory
from training.leakage.result import CheckResult

__all__ = [
    "CHECKS",
    "RUN_CHECKS",
    "AuditReport",
    "BarHistory",
    "CheckResult",
    "audit_config",
    "check_cv",
    "check_decision_time",
    "check_features",
    "check_holdout",
    "check_labels",
    "check_point_in_time",
    "check_preprocessing",
    "check_reproducibility",
    "check_warmup",
    "run_audit",
]
