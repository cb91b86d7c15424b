"""The trial registry counts every attempt of a family from its start, on a real MLflow backend (SQLite).

Unit tier: each test has its own SQLite tracking file, no server. The end-to-end count through `train` on
the bundled data is tests/test_train_trials.py.
"""

from __future__ import annotations

import threading

import pytest

from training.config import load_config
from training.model import trials
from training.model.trials import Family, attempt, family_records, trial_key

SYMBOLS = ["AAPL", "FB", "GOOG", "IBM", "MSFT"]


@pytest.fixture
def client(tmp_path, monkeypatch):
    """A tracking backend of this test's own; every attempt() in the test records into it."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("OHLCV_STATE_DIR", str(tmp_path / "state"))
    return MlflowClient(tracking_uri=uri)


def meta(fingerprint: str = "a" * 64, symbols: list[str] = SYMBOLS) -> dict:
    return {"symbols": symbols, "fingerprint": fingerprint}


def config(**sections):
    return load_config(None, sections)


SAME_FAMILY = [
    {"labels": {"horizon": 10}},
    {"labels": {"profit_taking": 0.03, "stop_loss": 0.01}},
    {"labels": {"barriers": "volatility", "touch": "close", "vertical_label": "sign"}},
    {"features": {"feature_service": "technical_model_raw"}},
    {"data": {"start": "2012-01-01", "end": "2014-01-01"}},
    {"weights": {"uniqueness": False, "time_decay": 0.5}},
    {"cv": {"method": "cpcv", "n_groups": 6}},
    {"model": {"num_leaves": 7, "learning_rate": 0.1}},
    {"model": {"seed": 7}},
]


@pytest.mark.parametrize("edit", SAME_FAMILY, ids=lambda e: ",".join(e))
def test_what_a_search_varies_is_another_trial_of_the_same_family(edit):
    base, edited = config(), config(**edit)
    assert Family.of(edited, meta()) == Family.of(base, meta())
    assert trial_key(edited, "a" * 64) != trial_key(base, "a" * 64)


def test_the_symbols_and_the_kind_of_target_make_another_family():
    base = Family.of(config(), meta())
    assert Family.of(config().with_sections({"target": "multiclass"}), meta()).key != base.key
    assert Family.of(config(), meta(symbols=["AAPL", "FB"])).key != base.key
    assert Family.of(config(), meta(symbols=list(reversed(SYMBOLS)))).key == base.key  # a set, not a list
    assert trial_key(config(), "b" * 64) != trial_key(config(), "a" * 64)  # the same configuration on other rows


def test_meta_label_is_a_family_of_its_own_and_its_settings_make_its_trials():
    """meta-label's kind replaces the target kind; its section, unhashed for train, tells its trials apart."""
    base, coarser = config(), config(meta_labeling={"step": 0.2})
    kind, counted = "meta_label:crossover", ("meta_labeling",)
    assert Family.of(base, meta(), kind).key not in {Family.of(base, meta()).key, Family.of(base, meta(), "x").key}
    assert trial_key(coarser, "a" * 64) == trial_key(base, "a" * 64)  # train does not read meta_labeling
    assert trial_key(coarser, "a" * 64, counted) != trial_key(base, "a" * 64, counted)
    assert trial_key(base, "a" * 64, counted) != trial_key(base, "a" * 64)


def counted(horizon: int, fingerprint: str = "a" * 64, requested: int | None = None, **meta_args) -> tuple[int, str]:
    with attempt(config(labels={"horizon": horizon}), meta(fingerprint, **meta_args), requested) as trial:
        return trial.resolve()


def test_every_attempt_counts_from_its_start_failed_ones_too_and_an_identical_rerun_once(client):
    assert counted(5)[0] == 1
    with pytest.raises(RuntimeError, match="before any metric"), attempt(config(labels={"horizon": 7}), meta()):
        raise RuntimeError("failed before any metric was logged")
    assert counted(5)[0] == 2  # the failed attempt (horizon 7) counts; the identical re-run of horizon 5 does not
    assert counted(5, fingerprint="b" * 64)[0] == 3  # the same configuration on other rows is another trial
    assert counted(10, symbols=["AAPL"])[0] == 1  # another family counts on its own
    records = family_records(client, Family.of(config(), meta()).key)
    assert len(records) == 4 and {r.info.status for r in records} == {"FINISHED", "FAILED"}
    failed = [r for r in records if r.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.tags["failure"] == "RuntimeError: failed before any metric was logged"
    assert all(r.info.experiment_id == client.get_experiment_by_name(trials.REGISTRY_EXPERIMENT).experiment_id
               for r in records)  # fmt: skip


def test_an_attempt_is_recorded_running_before_its_body_runs(client):
    with attempt(config(), meta()) as trial:
        assert client.get_run(trial.record_id).info.status == "RUNNING"
        assert trial.count() == 1
    assert client.get_run(trial.record_id).info.status == "FINISHED"


def test_trials_option_raises_n_and_never_lowers_it(client):
    for horizon in (3, 4, 5):
        counted(horizon)
    n, source = counted(6, requested=1)
    assert n == 4 and "--trials 1 is below the 4 trials of family" in source and "4 used" in source
    n, source = counted(6, requested=40)
    assert n == 40 and "--trials 40, above the 4 trials" in source
    assert counted(6, requested=4)[0] == 4


def test_concurrent_attempts_lose_no_count(client):
    """Attempts started at once, each counting while all are open: every one sees all of them."""
    starts = 6
    barrier, seen, errors = threading.Barrier(starts), [], []

    def one(horizon: int) -> None:
        try:
            with attempt(config(labels={"horizon": horizon}), meta()) as trial:
                barrier.wait(timeout=120)
                seen.append(trial.count())
        except Exception as exc:  # surfaced below: a lost record would show as a short count instead
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=one, args=(h,)) for h in range(2, 2 + starts)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors and seen == [starts] * starts
