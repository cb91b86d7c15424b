"""train refuses what its audit does not vouch for, and promotes to `champion` only by decision (issue 15, item 4).

Every refusal is one line with its exit code, and leaves MLflow as it was: no new run in the experiment,
no new model version, the `champion` alias where it was, no results file.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from tests.test_train import audited_copy, model_config
from training.config import load_config
from training.dataset import artifact
from training.model import promotion

MODEL = "gate-tests"


@pytest.fixture(scope="module")
def audited(bundled_dataset, tmp_path_factory) -> Path:
    return audited_copy(bundled_dataset[0], tmp_path_factory.mktemp("gate") / "panel")


@pytest.fixture(scope="module")
def champion(audited, tmp_path_factory) -> dict:
    """One audited run of the gate's own model: the champion the refused runs must leave alone."""
    folder = tmp_path_factory.mktemp("champion")
    config = model_config(folder, MODEL)
    result = run_cli("train", "--dataset", str(audited), "--results", str(folder / "r.json"), "--config", str(config))
    assert result.exit_code == 0, result.output
    return json.loads((folder / "r.json").read_text()) | {"config": str(config)}


def mlflow_state(name: str = MODEL) -> tuple[int, list[int], dict[str, str]]:
    """(runs in the experiment, versions of the model, its aliases): what a refused train must not change."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(load_config().mlflow.experiment)
    runs = len(client.search_runs([experiment.experiment_id], max_results=10_000)) if experiment else 0
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    aliases = client.get_registered_model(name).aliases if versions else {}
    return runs, versions, {alias: str(version) for alias, version in dict(aliases).items()}


def refused(dataset: Path, tmp_path: Path, config: str, *extra: str):
    """Run train expecting a refusal; check it is one line, wrote nothing and left MLflow alone."""
    before = mlflow_state()
    results = tmp_path / "refused.json"
    result = run_cli("train", "--dataset", str(dataset), "--results", str(results), "--config", config, *extra)
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    assert not results.exists()
    assert mlflow_state() == before
    return result


def unaudited_copy(audited: Path, folder: Path) -> Path:
    shutil.copytree(audited, folder)
    (folder / artifact.REPORT_FILE).unlink()
    return folder


def edited_copy(audited: Path, folder: Path) -> Path:
    """The issue's leak: `future_close = next_ret` added to the rows and listed as a feature."""
    shutil.copytree(audited, folder)
    frame = artifact.load(folder).frame
    frame["future_close"] = frame["next_ret"]
    frame.to_parquet(folder / artifact.part_name(0), index=False)
    meta = json.loads((folder / artifact.METADATA_FILE).read_text())
    meta["features"].append("future_close")
    (folder / artifact.METADATA_FILE).write_text(json.dumps(meta))
    return folder


def test_a_dataset_edited_after_its_build_is_refused(champion, audited, tmp_path):
    folder = edited_copy(audited, tmp_path / "edited")
    result = refused(folder, tmp_path, champion["config"])
    assert result.exit_code == 1
    assert f"refusing to train on {folder}: its rows hash to" in result.output
    assert "edited after the build?" in result.output and "--skip-audit" in result.output


def test_a_restamped_dataset_whose_report_audited_other_rows_is_refused(champion, audited, tmp_path):
    folder = edited_copy(audited, tmp_path / "restamped")
    meta = json.loads((folder / artifact.METADATA_FILE).read_text())
    dataset = artifact.load(folder)
    meta["fingerprint"] = artifact.fingerprint(dataset.frame, meta["config"], dataset.features)
    (folder / artifact.METADATA_FILE).write_text(json.dumps(meta))
    result = refused(folder, tmp_path, champion["config"])
    assert result.exit_code == 2
    assert f"its {artifact.REPORT_FILE} audited fingerprint {champion['dataset_fingerprint'][:12]}" in result.output
    assert f"not this dataset's {meta['fingerprint'][:12]}" in result.output


def test_a_dataset_without_a_leakage_report_is_refused(champion, audited, tmp_path):
    folder = unaudited_copy(audited, tmp_path / "unaudited")
    result = refused(folder, tmp_path, champion["config"])
    assert result.exit_code == 2
    assert f"its {artifact.REPORT_FILE} is missing; run `python -m training verify-leakage" in result.output


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_an_unreadable_leakage_report_is_refused(champion, audited, tmp_path, content):
    folder = tmp_path / "unreadable"
    shutil.copytree(audited, folder)
    (folder / artifact.REPORT_FILE).write_text(content)
    result = refused(folder, tmp_path, champion["config"])
    assert result.exit_code == 2 and f"its {artifact.REPORT_FILE} is unreadable" in result.output


def test_a_failed_leakage_report_is_refused(champion, audited, tmp_path):
    folder = tmp_path / "failed"
    shutil.copytree(audited, folder)
    report = json.loads((folder / artifact.REPORT_FILE).read_text())
    report.update(status="failed", failed_checks=["holdout"])
    (folder / artifact.REPORT_FILE).write_text(json.dumps(report))
    result = refused(folder, tmp_path, champion["config"])
    assert result.exit_code == 1
    assert f"its {artifact.REPORT_FILE} says failed (holdout)" in result.output


def test_a_config_file_contradicting_the_dataset_is_refused(champion, audited, tmp_path):
    for section, values, shown in (
        ("labels", {"horizon": 10}, "labels.horizon = 10 but the dataset was built with 5"),
        ("data", {"symbols": ["AAPL"]}, "data.symbols = ['AAPL'] but the dataset was built with None"),
    ):
        config = tmp_path / f"{section}.yaml"
        config.write_text(yaml.safe_dump({section: values, "mlflow": {"registered_model": MODEL}}))
        result = refused(audited, tmp_path, str(config))
        assert result.exit_code == 2 and shown in result.output
        report = (audited / artifact.REPORT_FILE).read_bytes()
        audit = run_cli("verify-leakage", "--dataset", str(audited), "--skip-rebuild", "--config", str(config))
        assert audit.exit_code == 2 and audit.output.strip().splitlines() == result.output.strip().splitlines()
        assert (audited / artifact.REPORT_FILE).read_bytes() == report
    same = tmp_path / "same.yaml"  # repeating what the dataset was built with is fine (make train does)
    same.write_text(yaml.safe_dump({"labels": {"horizon": 5}, "mlflow": {"registered_model": MODEL}}))
    unaudited = unaudited_copy(audited, tmp_path / "unaudited")
    assert f"its {artifact.REPORT_FILE} is missing" in refused(unaudited, tmp_path, str(same)).output  # the next gate


def test_promote_with_skip_audit_is_refused(champion, audited, tmp_path):
    result = refused(audited, tmp_path, champion["config"], "--skip-audit", "--promote")
    assert result.exit_code == 2 and "--promote and --skip-audit exclude each other" in result.output


def test_skip_audit_trains_an_experiment_that_is_tagged_and_never_promoted(champion, audited, tmp_path):
    from mlflow.tracking import MlflowClient

    folder = edited_copy(audited, tmp_path / "experiment")
    runs, versions, aliases = mlflow_state()
    results = tmp_path / "experiment.json"
    args = ("--results", str(results), "--config", champion["config"], "--skip-audit")
    result = run_cli("train", "--dataset", str(folder), *args)
    assert result.exit_code == 0, result.output
    assert "--skip-audit: training anyway, never promoted (its rows hash to" in result.output
    summary = json.loads(results.read_text())
    assert summary["audit"]["skipped"] and not summary["audit"]["passed"]
    assert summary["promotion"] == {
        "promoted": False,
        "reason": "trained with --skip-audit: such a run is never promoted",
        "metric": "roc_auc",
        "value": summary["holdout"]["roc_auc"],
        "champion_version": None,
        "champion_value": None,
    }
    client = MlflowClient()
    tags = client.get_run(summary["run_id"]).data.tags
    assert tags["skip_audit"] == "true" and tags["promotion"] == "not promoted"
    assert "its rows hash to" in tags["audit_findings"]
    version = client.get_model_version(MODEL, summary["model_version"])
    assert version.tags["skip_audit"] == "true" and version.aliases == []
    assert mlflow_state() == (runs + 1, [*versions, int(summary["model_version"])], aliases)  # alias unchanged


def test_promote_makes_an_audited_run_champion_even_when_it_does_not_beat_it(champion, audited, tmp_path):
    from mlflow.tracking import MlflowClient

    results = tmp_path / "promoted.json"
    args = ("--results", str(results), "--config", champion["config"], "--promote")
    result = run_cli("train", "--dataset", str(audited), *args)
    assert result.exit_code == 0, result.output
    summary = json.loads(results.read_text())
    assert summary["promotion"]["promoted"]
    assert summary["promotion"]["reason"].startswith("--promote: replaces champion")
    assert summary["holdout"]["roc_auc"] == champion["holdout"]["roc_auc"]  # equal: promoted only because asked
    assert "champion: --promote: replaces champion v" in result.output
    assert str(MlflowClient().get_model_version_by_alias(MODEL, "champion").version) == summary["model_version"]


# -- the promotion decision on a real MLflow backend -------------------------------------------------------------


def _registered(client, name: str, metrics: dict[str, float], fingerprint: str = "f" * 64) -> str:
    """A model version whose run logged ``metrics`` (as train logs them), made champion."""
    import mlflow

    mlflow.set_tracking_uri(client.tracking_uri)
    with mlflow.start_run(tags={"dataset_fingerprint": fingerprint}) as run:
        mlflow.log_metrics(metrics)
    if not client.search_registered_models(f"name='{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version
    client.set_registered_model_alias(name, "champion", version)
    return str(version)


AUDITED = promotion.Audit(passed=True, skipped=False, report_status="passed")


def _config(name: str, metric: str = "roc_auc", margin: float = 0.0) -> dict:
    return load_config(overrides={"mlflow": {"registered_model": name, "promote_metric": metric,
                                              "promote_min_improvement": margin}})  # fmt: skip


@pytest.mark.parametrize(
    ("champion_metrics", "metric", "margin", "value", "promoted", "reason"),
    [
        (None, "roc_auc", 0.0, 0.5, True, "no champion yet: the first audited run becomes champion"),
        ({"holdout/roc_auc": 0.52}, "roc_auc", 0.0, 0.55, True, "holdout roc_auc 0.5500 beats champion v1's 0.5200"),
        ({"holdout/roc_auc": 0.52}, "roc_auc", 0.05, 0.55, False, "champion v1's 0.5200 by more than 0.05"),
        ({"holdout/roc_auc": 0.55}, "roc_auc", 0.0, 0.55, False, "champion stays v1 (--promote overrides)"),
        ({"holdout/log_loss": 0.69}, "log_loss", 0.0, 0.65, True, "holdout log_loss 0.6500 beats champion v1's 0.6900"),
        ({"holdout/log_loss": 0.60}, "log_loss", 0.0, 0.65, False, "does not beat champion v1's 0.6000"),
        ({}, "roc_auc", 0.0, 0.9, False, "champion v1 has no comparable holdout roc_auc; pass --promote"),
    ],
)
def test_promotion_decision(isolated_services, champion_metrics, metric, margin, value, promoted, reason):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    name = f"decision-{uuid.uuid4().hex[:8]}"
    if champion_metrics is not None:
        _registered(client, name, champion_metrics)
    decision = promotion.decide(client, _config(name, metric, margin), {metric: value}, AUDITED, False, "e" * 64)
    assert decision.promoted is promoted and reason in decision.reason, decision.reason
    if champion_metrics:  # the champion was trained on a dataset with another fingerprint: say so
        assert "evaluated on another dataset" in decision.reason or "no comparable" in decision.reason


def test_forced_and_skipped_decisions(isolated_services):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    version = _registered(client, "decision-forced", {"holdout/roc_auc": 0.9})
    config = _config("decision-forced")
    forced = promotion.decide(client, config, {"roc_auc": 0.5}, AUDITED, True, "e" * 64)
    assert forced.promoted and forced.champion_version == version and forced.champion_value == 0.9
    skipped = promotion.Audit(passed=True, skipped=True, report_status="passed")
    assert not promotion.decide(client, config, {"roc_auc": 0.99}, skipped, False, "e" * 64).promoted
    client.delete_registered_model_alias("decision-forced", "champion")  # versions, but none is champion
    first = promotion.decide(client, config, {"roc_auc": 0.1}, AUDITED, False, "e" * 64)
    assert first.promoted and first.reason.startswith("no champion yet")


def test_a_run_that_fails_after_logging_registers_no_model_version(audited, tmp_path, monkeypatch):
    """The run is logged (its model too) but fails before it is registered: no version for anyone to serve."""
    from mlflow.tracking import MlflowClient

    from training.errors import ServiceUnavailable

    name = f"failed-run-{uuid.uuid4().hex[:8]}"

    def unreachable(*_args, **_kwargs):
        raise ServiceUnavailable("the champion's registry could not be read")

    monkeypatch.setattr(promotion, "decide", unreachable)
    config = model_config(tmp_path, name)
    result = run_cli("train", "--dataset", str(audited), "--results", str(tmp_path / "r.json"), "--config", str(config))
    assert result.exit_code != 0 and "could not be read" in result.output, result.output
    assert MlflowClient().search_model_versions(f"name='{name}'") == []
    assert not (tmp_path / "r.json").exists()
