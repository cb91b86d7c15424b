"""train's N through the trial registry, end to end: new label horizons are trials of one family, counted 1..5;
--trials cannot lower N; an attempt that fails before logging counts; an identical re-run does not.

Two symbols of the bundled data and a small model keep each run short; the MLflow backend is the test's own,
so the family's count starts at zero whatever else the session trained.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import run_cli
from training.model.trials import FAMILY_TAG, REGISTRY_EXPERIMENT, TRIAL_TAG

HORIZONS = (3, 4, 5, 6, 7)
SMALL_MODEL = {"num_boost_round": 30, "early_stopping_rounds": 5}


def _train(dataset, folder, name: str, *extra: str, model: dict | None = None) -> dict:
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"mlflow": {"registered_model": "trial-count-tests"},
                                      "model": SMALL_MODEL | (model or {})}))  # fmt: skip
    results = folder / f"{name}.json"
    result = run_cli("train", "--dataset", str(dataset), "--results", str(results), "--config", str(config),
                     "--skip-audit", "--n-splits", "3", *extra)  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(results.read_text()) | {"output": result.output}


def test_five_label_horizons_are_five_trials_of_one_family(pipeline, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    datasets = {}
    for horizon in HORIZONS:
        datasets[horizon] = tmp_path / f"h{horizon}"
        built = run_cli("build-dataset", "--symbols", "FB,IBM", "--horizon", str(horizon), "--out",
                        str(datasets[horizon]))  # fmt: skip
        assert built.exit_code == 0, built.output
    runs = [_train(datasets[h], tmp_path, f"h{h}", *(("--trials", "1") if h == HORIZONS[-1] else ())) for h in HORIZONS]
    assert [r["validity"]["trials"] for r in runs] == [1, 2, 3, 4, 5]
    assert "--trials 1 is below the 5 trials of family" in runs[-1]["output"]
    assert "validity: N = 5 trial(s)" in runs[-1]["output"]
    client = MlflowClient(tracking_uri=uri)
    logged = [client.get_run(r["run_id"]).data for r in runs]
    assert [d.metrics["validity/trials"] for d in logged] == [1, 2, 3, 4, 5]
    assert [d.tags["trials"] for d in logged] == ["1", "2", "3", "4", "5"]
    assert len({d.tags[FAMILY_TAG] for d in logged}) == 1 and len({d.tags[TRIAL_TAG] for d in logged}) == 5

    # An attempt failing before it logs anything still counts (another seed: another trial) ...
    def broken(*args, **kwargs):
        raise RuntimeError("training failed before any metric")

    with monkeypatch.context() as patch:
        patch.setattr("training.model.trainer.train", broken)
        with pytest.raises(RuntimeError, match="before any metric"):
            _train(datasets[3], tmp_path, "failing", model={"seed": 7})
    registry = client.get_experiment_by_name(REGISTRY_EXPERIMENT).experiment_id
    statuses = sorted(r.info.status for r in client.search_runs([registry]))
    assert statuses == ["FAILED"] + ["FINISHED"] * 5
    # ... and an identical re-run (same configuration, rows and seed) adds none.
    again = _train(datasets[3], tmp_path, "h3")
    assert again["validity"]["trials"] == 6
    assert client.get_run(again["run_id"]).data.tags[TRIAL_TAG] == logged[0].tags[TRIAL_TAG]
