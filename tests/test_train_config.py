"""Configuration values that pass type checks but not range checks are one line naming the key and the allowed
values, from load_config and from every command that reads a --config file (issue 15, item 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from training.config import default_config, fingerprint_text, load_config, refuse_contradicting_dataset
from training.errors import InputError

BAD = [
    ({"cv": {"n_splits": 1}}, "'cv.n_splits' must be a whole number >= 2, got 1"),
    ({"cv": {"n_splits": 2.5}}, "'cv.n_splits' must be a whole number, got 2.5"),
    ({"cv": {"n_splits": True}}, "'cv.n_splits' must be a number, got True"),
    ({"cv": {"n_splits": "5"}}, "'cv.n_splits' must be a number, got '5'"),
    ({"cv": {"n_splits": None}}, "'cv.n_splits' must be set, got null"),
    ({"cv": {"embargo": 0.5}}, "'cv.embargo' must be a number in [0, 0.5), got 0.5"),
    ({"cv": {"method": "cpcv", "n_splits": 3, "cpcv_test_groups": 3}}, "'cv.test_groups' must be below cv.n_groups"),
    ({"cv": {"n_folds": 1}}, "'cv.n_folds' must be a whole number >= 2, got 1"),
    ({"cv": {"method": "cpcv", "n_groups": 4, "test_groups": 4}}, "'cv.test_groups' must be below cv.n_groups (4)"),
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
    ({"target": "regression"}, "'target' must be one of binary, multiclass, got 'regression'"),
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
    assert config.model.num_leaves == 15 and isinstance(config.model.num_leaves, int)
    assert config.weights.time_decay == 1.0 and isinstance(config.weights.time_decay, float)
    assert config.dump()["data"] == {"symbols": ["AAPL", "MSFT"], "start": "2010-01-04", "end": None}
    (tmp_path / "dates.yaml").write_text("data:\n  start: 2010-01-04\n")  # YAML reads this as a date object
    assert load_config(tmp_path / "dates.yaml").data.start == "2010-01-04"


def test_invalid_yaml_is_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("cv:\n  n_splits: [1\n")
    with pytest.raises(InputError, match=r"is not valid YAML \(line \d+, column \d+\)") as raised:
        load_config(tmp_path / "bad.yaml")
    assert "\n" not in str(raised.value)


def test_promotion_settings_leave_the_dataset_fingerprint_alone():
    """Promotion keys say nothing about the rows: datasets built before they existed keep their fingerprint."""
    config = default_config().dump()
    without = {**config, "mlflow": {k: v for k, v in config["mlflow"].items() if not k.startswith("promote")}}
    assert fingerprint_text(config) == fingerprint_text(without)
    changed = {**config, "mlflow": {**config["mlflow"], "promote_metric": "f1"}}
    assert fingerprint_text(changed) == fingerprint_text(config)


def test_the_dump_is_what_the_dict_configuration_recorded():
    """Fingerprints, config hashes, metadata.json and MLflow params hash this text: same values, same bytes."""
    recorded = (
        '{"data":{"symbols":null,"start":null,"end":null},"features":{"feature_service":"technical_model_v1"},'
        '"labels":{"profit_taking":0.02,"stop_loss":0.02,"horizon":5,"barriers":"fixed","volatility_span":20,'
        '"touch":"high_low","vertical_label":"zero"},"target":"binary","weights":{"uniqueness":true,'
        '"return_attribution":false,"time_decay":1.0,"class_balance":true},"split":{"train_fraction":0.7,'
        '"embargo":0.01},"cv":{"method":"purged_kfold","n_splits":5,"embargo":0.01,"cpcv_test_groups":2},'
        '"model":{"objective":"binary","num_leaves":31,"learning_rate":0.05,"max_depth":5,"feature_fraction":0.8,'
        '"bagging_fraction":0.8,"bagging_freq":1,"lambda_l1":0.0,"lambda_l2":0.0,"seed":42,"num_boost_round":500,'
        '"early_stopping_rounds":50,"early_stopping_fraction":0.15},"backtest":{"cost_bps":5.0},"mlflow":'
        '{"experiment":"ohlcv-triple-barrier","run_name":"lgbm-{feature_service}-h{horizon}-{timestamp}",'
        '"registered_model":"ohlcv-lgbm-baseline","promote_metric":"roc_auc","promote_min_improvement":0.0},'
        '"monitoring":{"drift_alpha":0.01,"experiment":"ohlcv-monitoring"},"meta_labeling":{"primary":"crossover",'
        '"fast":"sma_5_rel","slow":"sma_20_rel","step":0.1},"cross_section":{"top_k":1},"tune":'
        + json.dumps(default_config().tune.model_dump(), separators=(",", ":"))
        + "}"
    )
    assert json.dumps(default_config().dump(), separators=(",", ":")) == recorded
    assert load_config(overrides={"model": {"num_leaves": 31.0}, "weights": {"time_decay": 1}}).dump() == json.loads(
        recorded
    )


KFOLD4 = {"method": "purged_kfold", "n_splits": 4, "embargo": 0.01, "cpcv_test_groups": 2}
CPCV6 = {"method": "cpcv", "n_splits": 6, "embargo": 0.01, "cpcv_test_groups": 2}


@pytest.mark.parametrize(
    ("cv", "counts", "recorded"),
    [
        ({"n_folds": 4}, (4, 5, 2), KFOLD4),
        ({"n_splits": 4}, (4, 4, 2), KFOLD4),
        ({"method": "cpcv", "n_groups": 6, "test_groups": 2, "n_folds": 3}, (3, 6, 2), CPCV6),
        ({"method": "cpcv", "n_splits": 6, "cpcv_test_groups": 2}, (6, 6, 2), CPCV6),
    ],
)
def test_cv_names_old_and_new_record_the_same_text(tmp_path, cv, counts, recorded):
    """n_splits (folds and groups) and cpcv_test_groups are read as before and recorded under those names, so a
    dataset's fingerprint and a leakage report's cv do not change with the spelling."""
    config = load_config(write(tmp_path, {"cv": cv}))
    assert (config.cv.n_folds, config.cv.n_groups, config.cv.test_groups) == counts
    assert json.dumps(config.dump()["cv"]) == json.dumps(recorded)


def test_an_old_and_a_new_name_together_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"'cv.n_splits' and 'cv.n_folds' name the same setting"):
        load_config(write(tmp_path, {"cv": {"n_splits": 4, "n_folds": 5}}))


def test_cpcv_combinations_are_capped_in_one_line(tmp_path):
    with pytest.raises(InputError) as raised:
        load_config(write(tmp_path, {"cv": {"method": "cpcv", "n_splits": 30, "cpcv_test_groups": 15}}))
    assert "155,117,520 CPCV splits, above the cap of 1,000" in str(raised.value) and "\n" not in str(raised.value)
    assert load_config(write(tmp_path, {"cv": {"method": "cpcv", "n_groups": 14, "test_groups": 3}})).cv.count == 14
    assert load_config(write(tmp_path, {"cv": {"n_splits": 30, "cpcv_test_groups": 15}})).cv.n_folds == 30  # k-fold


def test_a_file_with_the_new_cv_names_is_checked_against_the_dataset_sections_only(tmp_path):
    built = default_config().dump()
    refuse_contradicting_dataset(write(tmp_path, {"cv": {"n_folds": 4}, "labels": {"horizon": 5.0}}), built)
    with pytest.raises(InputError, match=r"sets labels.horizon = 7 but the dataset was built with 5"):
        refuse_contradicting_dataset(write(tmp_path, {"cv": {"n_groups": 6}, "labels": {"horizon": 7}}), built)
