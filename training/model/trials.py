"""The trial registry: every attempt (train, tune, meta-label) of a family counted from its start, failed ones too.

Family (what a researcher calls one search for a signal): the symbols the rows cover and the kind of target
(``binary`` or ``multiclass``; ``meta_label:<primary>`` for ``meta-label``, whose model learns whether the
primary's side was right and whose sized bets are another strategy, so its attempts never raise the
baseline's N). Everything varied while searching within it (label horizon, barrier widths, touch and
vertical label, sample weights, feature service, date range, split and CV settings, model parameters, seed)
is one more trial of the same family, never a new family.

Trial: a distinct (configuration, dataset fingerprint) pair. The configuration hash covers every setting
but the MLflow names and monitoring, the seed included, so an identical re-run (same configuration, rows
and seed) adds no trial, while the same configuration on other rows does.

Where: the MLflow tracking backend ``train`` logs to, experiment :data:`REGISTRY_EXPERIMENT`. Each attempt
is one run there, created before training starts (status RUNNING) and ended FINISHED or FAILED, so an
attempt that fails before logging anything, or is killed, still counts. Records are only ever added, one
per attempt: two trains at once cannot lose a count, and N, counted after training, includes every attempt
of the family started by then. The family is not tied to an MLflow experiment name: renaming the
experiment does not restart the count.

N = the family's distinct trials. ``--trials`` may raise N (trials run elsewhere), never lower it: a value
below the registry's count is overridden by the count, and the printed summary says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from training.config import UNHASHED_SECTIONS, Config

REGISTRY_EXPERIMENT = "trial-registry"
FAMILY_TAG, TRIAL_TAG, RUN_TAG = "trial_family", "trial_key", "training_run_id"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_hash(config: Config, counted: tuple[str, ...] = ()) -> str:
    """Identity of a configuration tried: everything but the MLflow names and how the model is watched, and
    the unhashed sections ``counted`` that this kind of trial reads (``meta_labeling`` for meta-label)."""
    kept = {k: v for k, v in config.dump().items() if k != "mlflow" and (k not in UNHASHED_SECTIONS or k in counted)}
    return _digest(kept)


@dataclass(frozen=True)
class Family:
    """One search for a signal: the symbols the rows cover and the kind of target."""

    symbols: tuple[str, ...]
    target: str

    @classmethod
    def of(cls, config: Config, metadata: dict[str, Any], kind: str | None = None) -> Family:
        return cls(tuple(sorted(metadata["symbols"])), kind or config.target)

    @property
    def key(self) -> str:
        return _digest({"symbols": list(self.symbols), "target": self.target})

    def describe(self) -> str:
        shown = ",".join(self.symbols[:5]) + (",..." if len(self.symbols) > 5 else "")
        return f"{self.target} target on {len(self.symbols)} symbol(s) {shown}"


def trial_key(config: Config, fingerprint: str, counted: tuple[str, ...] = ()) -> str:
    """A trial: this configuration (seed included, and the ``counted`` unhashed sections) on these rows."""
    return _digest({"config": config_hash(config, counted), "fingerprint": fingerprint})


def _registry(client: Any) -> str:
    """The registry experiment's id, created on first use (a concurrent creator may win the race)."""
    from mlflow.exceptions import MlflowException

    from training.infra import settings

    found = client.get_experiment_by_name(REGISTRY_EXPERIMENT)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(REGISTRY_EXPERIMENT, artifact_location=settings.mlflow_artifact_root())
    except MlflowException:
        return client.get_experiment_by_name(REGISTRY_EXPERIMENT).experiment_id


def family_records(client: Any, family: str) -> list[Any]:
    """Every attempt recorded for ``family``, newest first (all pages)."""
    experiment = _registry(client)
    records, token = [], None
    while True:
        page = client.search_runs([experiment], f"tags.{FAMILY_TAG} = '{family}'", max_results=10_000,
                                  order_by=["attributes.start_time DESC"], page_token=token)  # fmt: skip
        records.extend(page)
        token = page.token
        if not token:
            return records


@dataclass(frozen=True)
class Trial:
    """This attempt's record in the registry, and how N is read from it."""

    client: Any
    record_id: str
    family: Family
    key: str
    requested: int | None = None  # --trials

    def count(self) -> int:
        """Distinct trials of the family recorded so far, this one included (it was recorded at start)."""
        return len({r.data.tags.get(TRIAL_TAG) for r in family_records(self.client, self.family.key)})

    def resolve(self) -> tuple[int, str]:
        """N and where it comes from: the registry's count, raised (never lowered) by --trials."""
        counted = self.count()
        where = f"trials of family {self.family.key} ({self.family.describe()}) in the registry"
        if self.requested is None or self.requested == counted:
            return counted, where
        if self.requested > counted:
            return self.requested, f"--trials {self.requested}, above the {counted} {where}"
        return counted, f"--trials {self.requested} is below the {counted} {where}: {counted} used"

    def tags(self) -> dict[str, str]:
        """What the training run carries to find its trial."""
        return {FAMILY_TAG: self.family.key, TRIAL_TAG: self.key, "trial_record": self.record_id}

    def attach(self, run_id: str) -> None:
        """Link the record to the training run that logged this attempt's results."""
        self.client.set_tag(self.record_id, RUN_TAG, run_id)

    def tried_runs(self) -> dict[str, str]:
        """Training run of every other finished trial of the family (the newest attempt of each): key -> run id."""
        runs: dict[str, str] = {}
        for record in family_records(self.client, self.family.key):
            tags = record.data.tags
            key, run = tags.get(TRIAL_TAG), tags.get(RUN_TAG)
            if key and run and key != self.key and key not in runs and record.info.status == "FINISHED":
                runs[key] = run
        return runs


@contextmanager
def attempt(
    config: Config,
    metadata: dict[str, Any],
    requested: int | None = None,
    kind: str | None = None,
    counted: tuple[str, ...] = (),
) -> Iterator[Trial]:
    """Record an attempt before it starts; end the record FINISHED, or FAILED on any exception. ``kind``
    replaces the target kind in the family (meta-label's own), ``counted`` adds unhashed sections to the key."""
    from mlflow.tracking import MlflowClient

    from training.infra import settings

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri())
    family = Family.of(config, metadata, kind)
    key = trial_key(config, metadata["fingerprint"], counted)
    tags = {FAMILY_TAG: family.key, TRIAL_TAG: key, "family": family.describe()[:5000],
            "config_hash": config_hash(config, counted), "dataset_fingerprint": metadata["fingerprint"]}  # fmt: skip
    record = client.create_run(_registry(client), tags=tags, run_name=f"{family.key}-{key}")
    trial = Trial(client, record.info.run_id, family, key, requested)
    try:
        yield trial
    except BaseException as exc:
        client.set_tag(trial.record_id, "failure", f"{type(exc).__name__}: {exc}"[:5000])
        client.set_terminated(trial.record_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    client.set_terminated(trial.record_id, "FINISHED")
