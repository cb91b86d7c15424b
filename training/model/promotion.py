"""What ``train`` may train on, and whether its model becomes the ``champion`` that ``predict`` serves.

A model is only as trustworthy as the rows it learnt from: ``train`` refuses a dataset whose rows no
longer hash to its fingerprint, or whose leakage report is missing, failed, or was written for other rows
or other cross-validation folds. ``--skip-audit`` trains anyway for experiments, and such a run is never
promoted. Promotion is a decision, not a side effect of training: an audited run takes the alias when
there is no champion yet, when it beats the champion's hold-out value of ``mlflow.promote_metric`` by
more than ``mlflow.promote_min_improvement``, or when the user asks for it with ``--promote``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.config import PROMOTE_METRICS, Config, CVConfig
from training.contract import CHAMPION_ALIAS
from training.dataset import artifact
from training.errors import CheckFailed, InputError, ServiceUnavailable

VERIFY = "python -m training verify-leakage --dataset {path}"


@dataclass(frozen=True)
class Audit:
    """What ``train`` found out about the dataset before training (recorded as tags and in the results)."""

    passed: bool  # fingerprint and leakage report both vouch for these rows and folds
    skipped: bool  # --skip-audit: trained whatever the findings
    report_status: str  # the leakage report's status, or "missing" / "unreadable"
    findings: list[str] = field(default_factory=list)  # why the audit does not vouch (empty when passed)
    audited_at: str | None = None
    skipped_checks: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _fingerprint_finding(dataset: artifact.Dataset) -> str | None:
    stored = str(dataset.metadata.get("fingerprint"))
    hashed = artifact.fingerprint(dataset, dataset.metadata["config"], dataset.features)  # streams the parts
    if hashed == stored:
        return None
    return f"its rows hash to {hashed[:12]} but {artifact.METADATA_FILE} says {stored[:12]} (edited after the build?)"


def _read_report(path: Path) -> tuple[dict[str, Any] | None, str]:
    report = path / artifact.REPORT_FILE
    if not report.exists():
        return None, "missing"
    try:
        loaded = json.loads(report.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, "unreadable"
    return (loaded, str(loaded.get("status", "unknown"))) if isinstance(loaded, dict) else (None, "unreadable")


def _report_findings(report: dict[str, Any] | None, status: str, dataset: artifact.Dataset,
                     cv: CVConfig) -> list[str]:  # fmt: skip
    """Why the leakage report beside the dataset does not vouch for training it with ``cv``."""
    name = artifact.REPORT_FILE
    if report is None:
        return [f"its {name} is {status}"]
    findings = []
    if status != "passed":
        failed = ", ".join(map(str, _listed(report, "failed_checks"))) or "unknown checks"
        findings.append(f"its {name} says {status} ({failed})")
    audited = str(_mapping(report, "dataset").get("fingerprint"))
    if audited != dataset.metadata["fingerprint"]:
        findings.append(f"its {name} audited fingerprint {audited[:12]}, not this dataset's "
                        f"{str(dataset.metadata['fingerprint'])[:12]}")  # fmt: skip
    audited_cv = _mapping(report, "config").get("cv")
    if audited_cv != cv.model_dump():
        findings.append(f"its {name} audited the folds of cv {_compact(audited_cv)}, this run uses cv "
                        f"{_compact(cv.model_dump())}")  # fmt: skip
    return findings


def _mapping(report: dict[str, Any], key: str) -> dict[str, Any]:
    value = report.get(key)
    return value if isinstance(value, dict) else {}


def _listed(report: dict[str, Any], key: str) -> list[Any]:
    value = report.get(key)
    return value if isinstance(value, list) else []


def _compact(values: Any) -> str:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)


def audit(dataset: artifact.Dataset, path: Path, config: Config, skip: bool) -> Audit:
    """Check the dataset may be trained on; raise (before any MLflow run exists) unless ``skip``."""
    report, status = _read_report(Path(path))
    fingerprint = _fingerprint_finding(dataset)
    findings = ([fingerprint] if fingerprint else []) + _report_findings(report, status, dataset, config.cv)
    outcome = Audit(
        passed=not findings,
        skipped=skip,
        report_status=status,
        findings=findings,
        audited_at=str((report or {}).get("audited_at")) if (report or {}).get("audited_at") else None,
        skipped_checks=[str(c) for c in _listed(report or {}, "skipped_checks")],
    )
    if findings and not skip:
        _refuse(path, fingerprint, status, findings)
    return outcome


def _refuse(path: Path, fingerprint: str | None, status: str, findings: list[str]) -> None:
    how = (
        f"rebuild it with build-dataset, then run `{VERIFY.format(path=path)}`"
        if fingerprint
        else f"run `{VERIFY.format(path=path)}` (with this run's --config, --cv, --n-splits)"
    )
    message = f"refusing to train on {path}: {'; '.join(findings)}; {how}, or pass --skip-audit for an experiment"
    if fingerprint or status == "failed":
        raise CheckFailed(message)  # the rows are not what was built, or leak: a violation, like the audit's
    raise InputError(message)  # the audit has not been run for these rows and folds yet


# -- promotion -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str
    metric: str
    value: float | None
    champion_version: str | None = None  # the champion before this run
    champion_value: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _current_champion(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None  # no such model, or no such alias: no champion yet
        raise ServiceUnavailable(
            f"could not read the {CHAMPION_ALIAS!r} alias of {name} from MLflow ({error.error_code}); this run's "
            "version stays registered without the alias (check MLFLOW_TRACKING_URI)"
        ) from None


def _champion_value(client, champion, key: str) -> tuple[float | None, str | None]:
    """The champion's logged hold-out metric and the fingerprint of the dataset it was trained on."""
    from mlflow.exceptions import MlflowException

    if not champion.run_id:
        return None, None
    try:
        run = client.get_run(champion.run_id)
    except MlflowException:
        return None, None
    return run.data.metrics.get(key), run.data.tags.get("dataset_fingerprint")


def _beats(value: float, champion: float, higher_is_better: bool, margin: float) -> bool:
    return value > champion + margin if higher_is_better else value < champion - margin


def decide(client, config: Config, holdout: dict[str, Any], audit: Audit, forced: bool, fingerprint: str) -> Promotion:
    """Whether this run's model version takes the ``champion`` alias, and why (the alias is not touched here)."""
    metric, margin = config.mlflow.promote_metric, config.mlflow.promote_min_improvement
    value = float(holdout[metric]) if metric in holdout else None
    decision = {"metric": metric, "value": value}
    if audit.skipped:
        return Promotion(False, "trained with --skip-audit: such a run is never promoted", **decision)
    champion = _current_champion(client, config.mlflow.registered_model)
    if champion is None:
        return Promotion(True, "no champion yet: the first audited run becomes champion", **decision)
    previous, (best, champion_data) = str(champion.version), _champion_value(client, champion, f"holdout/{metric}")
    decision |= {"champion_version": previous, "champion_value": best}
    if forced:
        return Promotion(True, f"--promote: replaces champion v{previous}", **decision)
    if best is None or value is None or math.isnan(best) or math.isnan(value):
        return Promotion(False, f"champion v{previous} has no comparable holdout {metric}; pass --promote to replace "
                                "it", **decision)  # fmt: skip
    other = "" if champion_data == fingerprint else " (the champion was evaluated on another dataset)"
    comparison = f"champion v{previous}'s {best:.4f} by more than {margin:g}{other}"
    if _beats(value, best, PROMOTE_METRICS[metric], margin):
        return Promotion(True, f"holdout {metric} {value:.4f} beats {comparison}", **decision)
    return Promotion(
        False,
        f"holdout {metric} {value:.4f} does not beat {comparison}; champion stays v{previous} (--promote overrides)",
        **decision,
    )
