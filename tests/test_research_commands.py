"""importance --run and meta-label end to end on the bundled dataset, logging to the session's MLflow backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from tests.test_train import audited_copy, model_config


@pytest.fixture(scope="module")
def audited_panel(bundled_dataset, tmp_path_factory):
    return audited_copy(bundled_dataset[0], tmp_path_factory.mktemp("research") / "panel")


def test_train_importance_logs_every_method_under_the_run_and_importance_run_recomputes_it(audited_panel, tmp_path):
    import mlflow

    results = tmp_path / "results.json"
    config = model_config(tmp_path, "research-tests")
    trained = run_cli("train", "--dataset", str(audited_panel), "--results", str(results), "--config", str(config),
                      "--importance")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    trained_run = json.loads(results.read_text())
    run_id, uri = trained_run["run_id"], trained_run["tracking_uri"]
    client = mlflow.MlflowClient(uri)
    logged = {a.path for a in client.list_artifacts(run_id, "importance")}
    expected = {"mdi.csv", "mda.csv", "sfi.csv", "clustered_mda.csv", "importance.json", "importance.png"}
    assert logged == {f"importance/{name}" for name in expected}
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="importance/importance.json",
                                                tracking_uri=uri)  # fmt: skip
    summary = json.loads(Path(local).read_text())
    features = json.loads((audited_panel / "metadata.json").read_text())["features"]
    assert {entry["name"] for entry in summary["methods"]["mda"]} == set(features)
    assert sorted(m for members in summary["clusters"].values() for m in members) == sorted(features)

    again = run_cli("importance", "--run", str(results), "--method", "mdi")  # the results JSON names the run
    assert again.exit_code == 0, again.output
    assert "mdi" in again.output and "importance logged" in again.output


def test_importance_refuses_a_dataset_other_than_the_runs(audited_panel, tmp_path):
    results = tmp_path / "results.json"
    trained = run_cli("train", "--dataset", str(audited_panel), "--results", str(results), "--config",
                      str(model_config(tmp_path, "research-tests-other")))  # fmt: skip
    assert trained.exit_code == 0, trained.output
    other = tmp_path / "other"
    shutil.copytree(audited_panel, other)
    metadata = json.loads((other / "metadata.json").read_text())
    metadata["fingerprint"] = "0" * 64
    (other / "metadata.json").write_text(json.dumps(metadata))
    refused = run_cli("importance", "--run", str(results), "--dataset", str(other))
    assert refused.exit_code != 0
    assert "pass the run's dataset with --dataset" in refused.output and len(refused.output.strip().splitlines()) == 1


def test_meta_label_logs_a_run_with_scores_and_sized_backtests(audited_panel, tmp_path):
    import mlflow

    results = tmp_path / "meta.json"
    done = run_cli("meta-label", "--dataset", str(audited_panel), "--results", str(results))
    assert done.exit_code == 0, done.output
    summary = json.loads(results.read_text())
    assert summary["primary"] == "crossover"
    for part in ("cv", "holdout"):
        for metric in ("precision", "recall", "f1", "primary_sharpe", "sized_sharpe"):
            assert summary[part][metric] is not None
    client = mlflow.MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["run_id"])
    assert run.data.tags["kind"] == "meta_label" and run.data.metrics["holdout/f1"] == pytest.approx(
        summary["holdout"]["f1"]
    )
    logged = {a.path for a in client.list_artifacts(summary["run_id"])}
    assert {"meta_label.json", "meta_label_equity.png", "cv_daily_returns.csv", "holdout_daily_returns.csv"} <= logged


def test_meta_label_runs_are_counted_in_a_family_of_their_own_and_deflate_the_sized_sharpe(
    audited_panel, tmp_path, monkeypatch
):
    """Each meta-label run is an attempt in the trial registry (family meta_label:<primary>, so the baseline's N
    does not move), and its sized bets' PSR is deflated by that family's N, like train's."""
    from mlflow.tracking import MlflowClient

    from training.config import load_config
    from training.dataset import artifact
    from training.model.trials import Family, family_records

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")  # counted from 0
    coarser = tmp_path / "coarser.yaml"
    coarser.write_text(yaml.safe_dump({"meta_labeling": {"step": 0.2}}))  # another trial of the same family
    runs = []
    for name, extra in (("first", ()), ("second", ("--config", str(coarser)))):
        results = tmp_path / f"{name}.json"
        done = run_cli("meta-label", "--dataset", str(audited_panel), "--results", str(results), *extra)
        assert done.exit_code == 0, done.output
        runs.append(json.loads(results.read_text()))
    first, second = (run["validity"] for run in runs)
    assert first["trials"] == 1 and second["trials"] == 2
    assert first["cv"]["dsr"] == pytest.approx(first["cv"]["psr"])  # one trial: nothing to deflate by
    assert second["cv"]["dsr"] < second["cv"]["psr"]
    assert second["pbo"]["configurations"] == 2  # the first run's sized CV returns were found through its record
    assert "sized bets, N = 2 trial(s)" in done.output

    client = MlflowClient()
    metadata = artifact.load(audited_panel).metadata
    meta_family = Family.of(load_config(), metadata, "meta_label:crossover").key
    assert len(family_records(client, meta_family)) == 2
    assert family_records(client, Family.of(load_config(), metadata).key) == []  # the baseline's N is untouched
    logged = client.get_run(runs[1]["run_id"])
    assert logged.data.metrics["validity/trials"] == 2
    assert logged.data.metrics["validity/cv_sized_dsr"] == pytest.approx(second["cv"]["dsr"])
