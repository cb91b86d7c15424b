"""tune end to end on two bundled symbols: every trial a nested MLflow run counted in the trial registry, label
settings searched through datasets of their own, the winner trained by train with N = the trials and PBO over
them (and its feature importance with --importance), and the hold-out rows read exactly once, by the winner's
evaluation (a leaky search is caught)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import yaml

from tests.conftest import run_cli
from training.model import trainer
from training.model.trials import TRIAL_TAG

TRIALS = 8  # PBO's minimum of configurations
SEARCH = {
    "model": {"num_boost_round": 30, "early_stopping_rounds": 5},
    "cv": {"n_groups": 4, "test_groups": 2},
    "mlflow": {"registered_model": "tune-tests"},
    "tune": {"trials": TRIALS, "space": {
        "model.learning_rate": {"low": 0.02, "high": 0.3, "log": True},
        "model.num_leaves": {"low": 4, "high": 16},
        "labels.horizon": {"choices": [4, 5]},
        "model.feature_families": {"choices": [None, ["momentum", "volatility"]]},
    }},
}  # fmt: skip


@pytest.fixture
def holdout_reads(monkeypatch) -> list[int]:
    """The hold-out rows of every TrainingData built (what a model may fit on or score), in order."""
    reads: list[int] = []

    @dataclass
    class Recorded(trainer.TrainingData):
        def __post_init__(self) -> None:
            reads.append(len(self.holdout))

    monkeypatch.setattr(trainer, "TrainingData", Recorded)
    return reads


def read_once_by_the_last(reads: list[int], holdout_rows: int) -> None:
    """The check: no trial read the hold-out; the last read (the winner's train) read all of it, once."""
    assert reads[:-1] == [0] * (len(reads) - 1), f"hold-out rows read before the winner's evaluation: {reads}"
    assert reads[-1] == holdout_rows, f"the winner's evaluation read {reads[-1]} of {holdout_rows} hold-out rows"


@pytest.fixture
def search(pipeline, tmp_path, monkeypatch):
    """A built two-symbol dataset, the search's config file and its own MLflow backend (trials counted from 0)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    dataset = tmp_path / "dataset"
    built = run_cli("build-dataset", "--symbols", "IBM,MSFT", "--out", str(dataset))
    assert built.exit_code == 0, built.output
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump(SEARCH))
    return dataset, config, tmp_path / "work"


def test_trials_are_nested_counted_runs_and_the_holdout_is_read_once(search, holdout_reads):
    from mlflow.tracking import MlflowClient

    dataset, config, work = search
    result = run_cli("tune", "--dataset", str(dataset), "--config", str(config), "--work", str(work), "--importance")
    assert result.exit_code == 0, result.output
    out = json.loads((work / "tune_results.json").read_text())
    client = MlflowClient()
    parent = client.get_run(out["parent_run_id"])
    nested = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(nested) == TRIALS and {r.info.status for r in nested} == {"FINISHED"}
    assert len({r.data.tags[TRIAL_TAG] for r in nested}) == TRIALS  # distinct configurations, distinct trials
    # Both horizons were tried, each on a dataset of its own (the other horizon's built under --work).
    assert {r.data.params["labels.horizon"] for r in nested} == {"4", "5"}
    assert len({r.data.tags["dataset_fingerprint"] for r in nested}) == 2
    assert len(list((work / "datasets").iterdir())) == 1

    validity = out["train"]["validity"]
    assert validity["trials"] == TRIALS  # N: every trial of the family, the winner's own counted once
    assert validity["holdout"]["dsr"] < validity["holdout"]["psr"]
    assert validity["pbo"]["configurations"] == TRIALS and 0.0 <= validity["pbo"]["pbo"] <= 1.0
    winner = client.get_run(out["train"]["run_id"])
    assert winner.data.tags[TRIAL_TAG] == client.get_run(out["winner"]["trial_run_id"]).data.tags[TRIAL_TAG]
    assert winner.data.tags["tune_parent_run"] == parent.info.run_id
    assert parent.data.metrics["validity/trials"] == TRIALS and "validity/pbo" in parent.data.metrics
    assert "cross_section/holdout/rank_ic_mean" in winner.data.metrics
    assert "cross_section/cv/rank_ic_mean" in nested[0].data.metrics

    from training.dataset import artifact

    holdout_rows = artifact.load(out["winner"]["dataset"]).metadata["rows_by_split"]["validation"]
    assert len(holdout_reads) == TRIALS + 2  # the trials, the winner's train, then its importance
    read_once_by_the_last(holdout_reads[:-1], holdout_rows)
    assert holdout_reads[-1] == 0  # --importance: the winner's training rows only

    importance = {a.path for a in client.list_artifacts(winner.info.run_id, "importance")}
    expected = {"mdi.csv", "mda.csv", "sfi.csv", "clustered_mda.csv", "importance.json", "importance.png"}
    assert importance == {f"importance/{name}" for name in expected}


def test_a_search_whose_trials_read_the_holdout_is_caught(search, holdout_reads, monkeypatch):
    """The same check on a deliberately leaky search: trials loading the hold-out rows fail it."""
    from training.model import tuning

    dataset, config, work = search
    leaky = lambda dataset, features, holdout: trainer.load_training_data(dataset, features)  # noqa: E731
    monkeypatch.setattr(tuning, "load_training_data", leaky)
    result = run_cli("tune", "--dataset", str(dataset), "--config", str(config), "--work", str(work),
                     "--trials", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    holdout_rows = json.loads((work / "winner_results.json").read_text())["holdout"]
    with pytest.raises(AssertionError, match="read before the winner's evaluation"):
        read_once_by_the_last(holdout_reads, len(holdout_reads) and holdout_reads[-1])
    assert holdout_rows  # the leaky search still ran to the end: only the check tells


def test_a_work_folder_that_cannot_be_written_is_refused_before_the_search(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    result = run_cli("tune", "--dataset", str(tmp_path / "none"), "--work", str(taken))
    assert result.exit_code != 0 and f"--work {taken} cannot be written: {taken} is a file" in result.output
    assert taken.read_text() == "not a folder"


def test_the_research_chain_tune_then_importance_then_meta_label_of_the_winner(search):
    """The walk-through of docs/research.md on small data: tune's winner (trained under CPCV) is the run importance
    reads and the primary meta-label refits nested under purged K-fold over the same groups."""
    from mlflow.tracking import MlflowClient

    dataset, config, work = search
    tuned = run_cli("tune", "--dataset", str(dataset), "--config", str(config), "--work", str(work), "--trials", "2")
    assert tuned.exit_code == 0, tuned.output
    winner = work / "winner_results.json"
    ranked = run_cli("importance", "--run", str(winner), "--method", "mda")
    assert ranked.exit_code == 0 and "importance logged" in ranked.output, ranked.output
    results = work / "meta.json"
    meta = run_cli("meta-label", "--primary", str(winner), "--results", str(results))
    assert meta.exit_code == 0, meta.output
    summary, trained = json.loads(results.read_text()), json.loads(winner.read_text())
    assert summary["primary"] == "model" and summary["primary_run"] == trained["run_id"]
    assert summary["dataset_fingerprint"] == trained["dataset_fingerprint"]  # the winner's own dataset
    assert len(summary["folds"]) == SEARCH["cv"]["n_groups"]  # K-fold over the CPCV's groups
    assert summary["cv"]["rows"] > 0 and summary["holdout"]["f1"] is not None
    run = MlflowClient().get_run(summary["run_id"])
    assert run.data.tags["primary_run"] == trained["run_id"]
    assert run.data.tags["validation_method"].startswith("purged_kfold(n_splits=4")
    assert run.data.params["meta_labeling.primary"] == "model"
    refused = run_cli("meta-label", "--primary", str(winner), "--config", str(config))  # sets model.*, cv, ...
    assert refused.exit_code != 0 and "--config may set meta_labeling only" in refused.output, refused.output
