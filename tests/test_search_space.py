"""tune's search space and the settings it varies: parsing with one-line refusals, Optuna drawing the declared
values (list choices included), and what never enters a fingerprint or a trial's key."""

from __future__ import annotations

import re

import optuna
import pytest

from training.config import default_config, fingerprint_text, load_config
from training.errors import InputError
from training.model.trainer import model_features
from training.model.trials import config_hash
from training.model.tuning import check_space
from training.search_space import overrides, parse_space

SPACE = {
    "model.num_leaves": {"low": 4, "high": 32, "log": True},
    "model.learning_rate": {"low": 0.01, "high": 0.2},
    "labels.horizon": {"choices": [5, 10]},
    "model.feature_families": {"choices": [None, ["momentum", "volatility"]]},
}


def test_every_kind_of_dimension_draws_its_declared_values():
    dimensions = parse_space(SPACE)
    fixed = optuna.trial.FixedTrial({"model.num_leaves": 8, "model.learning_rate": 0.05, "labels.horizon": 10,
                                     "model.feature_families": "momentum+volatility"})  # fmt: skip
    values = {d.key: d.suggest(fixed) for d in dimensions}
    assert values == {"model.num_leaves": 8, "model.learning_rate": 0.05, "labels.horizon": 10,
                      "model.feature_families": ["momentum", "volatility"]}  # fmt: skip
    model = {"num_leaves": 8, "learning_rate": 0.05, "feature_families": ["momentum", "volatility"]}
    assert overrides(values) == {"model": model, "labels": {"horizon": 10}}


def test_a_seeded_sampler_draws_the_same_configurations_again():
    dimensions = parse_space(SPACE)

    def draws() -> list[dict]:
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3))
        study.optimize(lambda t: sum(float(d.suggest(t) is not None) for d in dimensions), n_trials=12)
        return [t.params for t in study.trials]

    assert draws() == draws()


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"cv.n_groups": {"low": 4, "high": 8}}, "only model and labels keys are searched"),
        ({"model.num_leaves": [4, 8]}, "must be a mapping"),
        ({"model.num_leaves": {"low": 8, "high": 4}}, "low < high"),
        ({"model.learning_rate": {"low": 0.0, "high": 0.1, "log": True}}, "log scale needs low > 0"),
        ({"labels.horizon": {"choices": []}}, "non-empty list"),
        ({"model.num_leaves": {"min": 4, "max": 8}}, re.escape("{low, high[, log]} or {choices")),
    ],
)
def test_a_malformed_space_is_refused_in_one_line(space, message, tmp_path):
    (tmp_path / "tune.yaml").write_text(f"tune: {{space: {space!r}}}".replace("'", '"').replace("None", "null"))
    with pytest.raises(InputError, match=message) as raised:
        load_config(tmp_path / "tune.yaml")
    assert "\n" not in str(raised.value) and "tune.space." in str(raised.value)


def test_values_outside_a_keys_range_are_refused_before_any_trial():
    config = default_config()
    with pytest.raises(InputError, match=re.escape("'model.num_leaves' must be a whole number in [2, 131072]")):
        check_space(config, parse_space({"model.num_leaves": {"low": 1, "high": 8}}))
    with pytest.raises(InputError, match=re.escape("unknown configuration key 'model.leaves'")):
        check_space(config, parse_space({"model.leaves": {"low": 2, "high": 8}}))
    with pytest.raises(InputError, match=re.escape("model.feature_families")):
        check_space(config, parse_space({"model.feature_families": {"choices": [["momentum", "sentiment"]]}}))


def test_search_settings_never_change_a_fingerprint_or_a_trial_key():
    base = default_config()
    searched = load_config(overrides={"tune": {"trials": 3, "seed": 9}, "cross_section": {"top_k": 2}})
    assert fingerprint_text(searched) == fingerprint_text(base) and config_hash(searched) == config_hash(base)
    assert "feature_families" not in base.dump()["model"]  # unset: configurations hash as before it existed
    subset = base.with_sections({"model": {"feature_families": ["trend"]}})
    assert config_hash(subset) != config_hash(base)  # a feature subset is another trial


def test_feature_families_select_the_model_forms_of_their_indicators():
    features = ["sma_5_rel", "rsi_14", "macd_norm", "atr_14_norm", "volume_change", "close_open_ratio"]
    assert model_features(features, None) == features
    assert model_features(features, ["momentum"]) == ["rsi_14", "macd_norm"]
    assert model_features(features, ["trend", "price_action"]) == ["sma_5_rel", "close_open_ratio"]
    with pytest.raises(InputError, match="selects none of the dataset features"):
        model_features(["rsi_14"], ["volume"])
