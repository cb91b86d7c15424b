"""The pipeline configuration: packaged defaults (equal to the SPEC), a user's YAML file, CLI overrides.

Kept as plain nested dicts so it serialises into dataset metadata and MLflow as is; :func:`load_config`
rejects unknown keys, wrong types and out-of-range values with one line naming the key, so a typo never
silently falls back to a default and a bad value never reaches LightGBM or the splitters as a traceback.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from training.contract import DEFAULT_FEATURE_SERVICE
from training.errors import InputError

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.yaml")
Config = dict[str, Any]

# Hold-out metrics a run can be promoted on, and whether higher is better.
PROMOTE_METRICS: dict[str, bool] = {
    "roc_auc": True,
    "accuracy": True,
    "f1": True,
    "information_coefficient": True,
    "backtest_sharpe": True,
    "log_loss": False,
}

CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("labels", "barriers"): ("fixed", "volatility"),
    ("labels", "touch"): ("high_low", "close"),
    ("labels", "vertical_label"): ("zero", "sign"),
    ("cv", "method"): ("purged_kfold", "cpcv"),
    ("model", "objective"): ("binary", "cross_entropy"),  # the multiclass objective follows from the target
    ("mlflow", "promote_metric"): tuple(PROMOTE_METRICS),
}
DATASET_SECTIONS = ("data", "features", "labels", "target", "weights", "split")  # what build-dataset decides


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric key: bounds (None = open), whether they are included, whole numbers only."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    whole: bool = False

    def admits(self, value: float) -> bool:
        if not math.isfinite(value) or (self.whole and not float(value).is_integer()):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        return kind


POSITIVE, NON_NEGATIVE, FRACTION = Range(0, low_open=True), Range(0), Range(0, 1, low_open=True, high_open=True)
EMBARGO, SHARE = Range(0, 0.5, high_open=True), Range(0, 1, low_open=True)
RANGES: dict[tuple[str, str], Range] = {
    ("labels", "profit_taking"): POSITIVE,
    ("labels", "stop_loss"): POSITIVE,
    ("labels", "horizon"): Range(1, whole=True),
    ("labels", "volatility_span"): Range(2, whole=True),
    ("weights", "time_decay"): SHARE,
    ("split", "train_fraction"): FRACTION,
    ("split", "embargo"): EMBARGO,
    ("cv", "n_splits"): Range(2, whole=True),
    ("cv", "embargo"): EMBARGO,
    ("cv", "cpcv_test_groups"): Range(1, whole=True),
    ("model", "num_leaves"): Range(2, 131072, whole=True),
    ("model", "learning_rate"): POSITIVE,
    ("model", "max_depth"): Range(-1, whole=True),
    ("model", "feature_fraction"): SHARE,
    ("model", "bagging_fraction"): SHARE,
    ("model", "bagging_freq"): Range(0, whole=True),
    ("model", "lambda_l1"): NON_NEGATIVE,
    ("model", "lambda_l2"): NON_NEGATIVE,
    ("model", "seed"): Range(0, 2**31 - 1, whole=True),
    ("model", "num_boost_round"): Range(1, whole=True),
    ("model", "early_stopping_rounds"): Range(1, whole=True),
    ("model", "early_stopping_fraction"): Range(0, 0.5, low_open=True),
    ("backtest", "cost_bps"): NON_NEGATIVE,
    ("mlflow", "promote_min_improvement"): NON_NEGATIVE,
    ("monitoring", "drift_alpha"): FRACTION,
}
UNHASHED_KEYS = (("mlflow", "promote_metric"), ("mlflow", "promote_min_improvement"))
UNHASHED_SECTIONS = ("monitoring",)  # how a served model is watched says nothing about the rows or the model
RUN_NAME_FIELDS = {"feature_service": "x", "horizon": 5, "timestamp": "x"}


def default_config() -> Config:
    """The packaged defaults, with the model's feature service named where the YAML leaves it null."""
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    config["features"]["feature_service"] = config["features"]["feature_service"] or DEFAULT_FEATURE_SERVICE
    return config


def _merge(base: Config, override: Config, path: str = "") -> Config:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}{key}"
        if key not in base:
            raise InputError(f"unknown configuration key {where!r}; known keys here: {', '.join(base)}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise InputError(f"configuration key {where!r} must be a mapping")
            merged[key] = _merge(base[key], value, f"{where}.")
        else:
            merged[key] = _typed(where, base[key], value)
    return merged


def _typed(where: str, default: Any, value: Any) -> Any:
    """``value`` in the type of the default; null only where the default is null (the data section)."""
    if default is None:
        return value
    if value is None:
        raise InputError(f"configuration key {where!r} must be set, got null (default {default!r})")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise InputError(f"configuration key {where!r} must be true or false, got {value!r}")
        return value
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"configuration key {where!r} must be a number, got {value!r}")
        if isinstance(default, float):
            return float(value)
        if not float(value).is_integer():
            raise InputError(f"configuration key {where!r} must be a whole number, got {value!r}")
        return int(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise InputError(f"configuration key {where!r} must be a string, got {value!r}")
    return value


def _read_file(path: Path) -> Config:
    if not Path(path).exists():
        raise InputError(f"configuration file {path} does not exist")
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise InputError(f"configuration file {path} is not valid YAML{where}: {first}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"configuration file {path} cannot be read: {exc}") from None
    if not isinstance(loaded, dict):
        raise InputError(f"configuration file {path} must hold a mapping at the top level")
    return loaded


def file_settings(path: Path | None) -> Config:
    """Only what the YAML file at ``path`` sets (validated like :func:`load_config`), without defaults."""
    if path is None:
        return {}
    loaded = _read_file(path)
    merged = load_config(path)
    return {s: {k: merged[s][k] for k in v} if isinstance(v, dict) else merged[s] for s, v in loaded.items()}


def refuse_contradicting_dataset(path: Path | None, built: Config) -> None:
    """Refuse a config file that sets a dataset setting (data, labels, ...) other than the dataset's own.

    train and verify-leakage take those sections from the dataset; silently preferring them over the file
    would leave the user believing the file applied. Repeating the dataset's values is fine.
    """
    asked = file_settings(path)
    for section in (s for s in DATASET_SECTIONS if s in asked):
        wanted = asked[section]
        pairs = wanted.items() if isinstance(wanted, dict) else [(None, wanted)]
        for key, value in pairs:
            stored = built.get(section) if key is None else (built.get(section) or {}).get(key)
            if value != stored:
                name = section if key is None else f"{section}.{key}"
                raise InputError(
                    f"{path} sets {name} = {value!r} but the dataset was built with {stored!r}; the dataset settings "
                    f"({', '.join(DATASET_SECTIONS)}) come from the dataset: rebuild it with build-dataset --config "
                    f"{path}, or drop them from this file"
                )


def load_config(path: Path | None = None, overrides: Config | None = None) -> Config:
    """Defaults, then the YAML file at ``path``, then ``overrides`` (CLI options; None values ignored)."""
    config = default_config()
    if path is not None:
        config = _merge(config, _read_file(path))
    if overrides:
        pruned = {section: {k: v for k, v in values.items() if v is not None} for section, values in overrides.items()}
        config = _merge(config, {s: v for s, v in pruned.items() if v})
    config["features"]["feature_service"] = config["features"]["feature_service"] or DEFAULT_FEATURE_SERVICE
    _validate(config)
    return config


def _date_text(where: str, value: Any) -> str | None:
    """A date of the data section as YYYY-MM-DD (YAML reads an unquoted date as a date object)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise InputError(f"configuration key {where!r} must be a date YYYY-MM-DD or null, got {value!r}")


def _symbols(value: Any) -> list[str] | None:
    """data.symbols as a list of names: null, "AAPL,MSFT" or a list of non-empty strings."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) and s.strip() for s in items) or not items:
        raise InputError(f"configuration key 'data.symbols' must be null or a list of symbol names, got {value!r}")
    return [s.strip() for s in items]


def _validate_data(data: Config) -> None:
    data["symbols"] = _symbols(data["symbols"])
    for key in ("start", "end"):
        data[key] = _date_text(f"data.{key}", data[key])


def _validate(config: Config) -> None:
    for (section, key), allowed in CHOICES.items():
        if config[section][key] not in allowed:
            raise InputError(
                f"configuration key '{section}.{key}' must be one of {', '.join(allowed)}, got {config[section][key]!r}"
            )
    if config["target"] not in ("binary", "multiclass"):
        raise InputError(f"configuration key 'target' must be binary or multiclass, got {config['target']!r}")
    for (section, key), allowed in RANGES.items():
        value = config[section][key]
        if not allowed.admits(value):
            raise InputError(f"configuration key '{section}.{key}' must be {allowed.describe()}, got {value!r}")
    cv = config["cv"]
    if cv["method"] == "cpcv" and not cv["cpcv_test_groups"] < cv["n_splits"]:
        raise InputError(
            f"configuration key 'cv.cpcv_test_groups' must be below cv.n_splits ({cv['n_splits']}), "
            f"got {cv['cpcv_test_groups']}"
        )
    _validate_data(config["data"])
    _validate_mlflow(config["mlflow"])


def _validate_mlflow(section: Config) -> None:
    for key in ("experiment", "registered_model"):
        if not section[key].strip():
            raise InputError(f"configuration key 'mlflow.{key}' must be a non-empty name")
    try:
        section["run_name"].format(**RUN_NAME_FIELDS)
    except (KeyError, IndexError, ValueError) as exc:
        fields = ", ".join("{" + f + "}" for f in RUN_NAME_FIELDS)
        raise InputError(
            f"configuration key 'mlflow.run_name' may only use the fields {fields}, got {section['run_name']!r} ({exc})"
        ) from None


def fingerprint_text(config: Config) -> str:
    """Canonical JSON of the configuration, for fingerprints: key order never changes a hash.

    How a trained model gets promoted or watched says nothing about the rows, so those keys are left out: a
    dataset built before they existed keeps its fingerprint, and changing them never invalidates a dataset.
    """
    hashed = {k: v for k, v in copy.deepcopy(config).items() if k not in UNHASHED_SECTIONS}
    for section, key in UNHASHED_KEYS:
        if isinstance(hashed.get(section), dict):
            hashed[section].pop(key, None)
    return json.dumps(hashed, sort_keys=True, separators=(",", ":"), default=str)
