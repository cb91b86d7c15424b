"""Configuration values that pass type checks but not range checks are one line naming the key and the allowed
values, from load_config and from every command that reads a --config file (issue 15, item 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from training.config import default_config, fingerprint_text, load_config
from training.errors import InputError

BAD = [
    ({"cv": {"n_splits": 1}}, "'cv.n_splits' must be a whole number >= 2, got 1"),
    ({"cv": {"n_splits": 2.5}}, "'cv.n_splits' must be a whole number, got 2.5"),
    ({"cv": {"n_splits": True}}, "'cv.n_splits' must be a number, got True"),
    ({"cv": {"n_splits": "5"}}, "'cv.n_splits' must be a number, got '5'"),
    ({"cv": {"n_splits": None}}, "'cv.n_splits' must be set, got null"),
    ({"cv": {"embargo": 0.5}}, "'cv.embargo' must be a number in [0, 0.5), got 0.5"),
    ({"cv": {"method": "cpcv", "n_splits": 3, "cpcv_test_groups": 3}}, "'cv.cpcv_test_groups' must be below"),
    ({"model": {"num_boost_round": -10}}, "'model.num_boost_round' must be a whole number >= 1, got -10"),
    ({"model": {"learning_rate": 0}}, "'model.learning_rate' must be a number > 0, got 0.0"),
    ({"model": {"learning_rate": float("nan")}}, "'model.learning_rate' must be a number > 0, got nan"),
    ({"model": {"learning_rate": True}}, "'model.learning_rate' must be a number, got True"),
    ({"model": {"num_leaves": 1}}, "'model.num_leaves' must be a whole number in [2, 131072], got 1"),
    ({"model": {"feature_fraction": 0}}, "'model.feature_fraction' must be a number in (0, 1], got 0.0"),
    ({"model": {"bagging_fraction": 1.5}}, "'model.bagging_fraction' must be a number in (0, 1], got 1.5"),
    ({"model": {"early_stopping_rounds": 0}}, "'model.early_stopping_rounds' must be a whole number >= 1, got 0"),
    ({"model": {"early_stopping_fraction": 0.9}}, "'model.early_stopping_fraction' must be a number in (0, 0.5]"),
    ({"model": {"lambda_l2": -1}}, "'model.lambda_l2' must be a number >= 0, got -1.0"),
    ({"model": {"objective": "regression"}}, "'model.objective' must be one of binary, cross_entropy"),
    ({"split": {"train_fraction": 1}}, "'split.train_fraction' must be a number in (0, 1), got 1.0"),
    ({"split": {"train_fraction": float("inf")}}, "'split.train_fraction' must be a number in (0, 1), got inf"),
    ({"labels": {"horizon": 0}}, "'labels.horizon' must be a whole number >= 1, got 0"),
    ({"labels": {"stop_loss": -0.02}}, "'labels.stop_loss' must be a number > 0, got -0.02"),
    ({"labels": {"volatility_span": 1}}, "'labels.volatility_span' must be a whole number >= 2, got 1"),
    ({"weights": {"time_decay": 0}}, "'weights.time_decay' must be a number in (0, 1], got 0.0"),
    ({"weights": {"uniqueness": 1}}, "'weights.uniqueness' must be true or false, got 1"),
    ({"backtest": {"cost_bps": -5}}, "'backtest.cost_bps' must be a number >= 0, got -5.0"),
    ({"target": "regression"}, "'target' must be binary or multiclass, got 'regression'"),
    ({"data": {"start": "01/03/2000"}}, "'data.start' must be a date YYYY-MM-DD or null, got '01/03/2000'"),
    ({"data": {"symbols": [1, 2]}}, "'data.symbols' must be null or a list of symbol names, got [1, 2]"),
    ({"mlflow": {"promote_metric": "sharpe"}}, "'mlflow.promote_metric' must be one of roc_auc, accuracy"),
    ({"mlflow": {"promote_min_improvement": -0.1}}, "'mlflow.promote_min_improvement' must be a number >= 0"),
    ({"mlflow": {"registered_model": " "}}, "'mlflow.registered_model' must be a non-empty name"),
    ({"mlflow": {"run_name": "lgbm-{seed}"}}, "'mlflow.run_name' may only use the fields {feature_service}"),
]


def write(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize(("values", "message"), BAD, ids=[m.split("'")[1] + f"-{i}" for i, (_, m) in enumerate(BAD)])
def test_out_of_range_values_are_one_line_naming_key_and_range(tmp_path, values, message):
    with pytest.raises(InputError) as raised:
        load_config(write(tmp_path, values))
    assert f"configuration key {message}" in str(raised.value) and "\n" not in str(raised.value)


def test_commands_refuse_a_bad_config_in_one_line_writing_nothing(bundled_dataset, tmp_path):
    config = write(tmp_path, {"cv": {"n_splits": 1}})
    folder, _ = bundled_dataset
    before = sorted(p.name for p in folder.iterdir())
    for args in (
        ("train", "--dataset", str(folder), "--results", str(tmp_path / "r.json")),
        ("verify-leakage", "--dataset", str(folder), "--skip-rebuild"),
        ("build-dataset", "--out", str(tmp_path / "out")),
    ):
        result = run_cli(*args, "--config", str(config))
        assert result.exit_code == 2, result.output
        assert result.output.strip() == "error: configuration key 'cv.n_splits' must be a whole number >= 2, got 1"
    assert sorted(p.name for p in folder.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_cli_options_are_range_checked_too(isolated_services, tmp_path):
    result = run_cli("build-dataset", "--out", str(tmp_path / "out"), "--horizon", "0")
    assert result.exit_code == 2 and "'labels.horizon' must be a whole number >= 1, got 0" in result.output
    assert not (tmp_path / "out").exists()


def test_accepted_spellings_normalise(tmp_path):
    config = load_config(write(tmp_path, {"model": {"num_leaves": 15.0}, "weights": {"time_decay": 1},
                                          "data": {"symbols": "AAPL, MSFT", "start": "2010-01-04"}}))  # fmt: skip
    assert config["model"]["num_leaves"] == 15 and isinstance(config["model"]["num_leaves"], int)
    assert config["weights"]["time_decay"] == 1.0 and isinstance(config["weights"]["time_decay"], float)
    assert config["data"] == {"symbols": ["AAPL", "MSFT"], "start": "2010-01-04", "end": None}
    (tmp_path / "dates.yaml").write_text("data:\n  start: 2010-01-04\n")  # YAML reads this as a date object
    assert load_config(tmp_path / "dates.yaml")["data"]["start"] == "2010-01-04"


def test_invalid_yaml_is_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("cv:\n  n_splits: [1\n")
    with pytest.raises(InputError, match=r"is not valid YAML \(line \d+, column \d+\)") as raised:
        load_config(tmp_path / "bad.yaml")
    assert "\n" not in str(raised.value)


def test_promotion_settings_leave_the_dataset_fingerprint_alone():
    """Promotion keys say nothing about the rows: datasets built before they existed keep their fingerprint."""
    config = default_config()
    without = {**config, "mlflow": {k: v for k, v in config["mlflow"].items() if not k.startswith("promote")}}
    assert fingerprint_text(config) == fingerprint_text(without)
    changed = {**config, "mlflow": {**config["mlflow"], "promote_metric": "f1"}}
    assert fingerprint_text(changed) == fingerprint_text(config)
