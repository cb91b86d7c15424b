"""The pipeline configuration: packaged defaults (equal to the SPEC), a user's YAML file, CLI overrides.

Kept as plain nested dicts so it serialises into dataset metadata and MLflow as is; :func:`load_config`
rejects unknown keys and wrong types so a typo never silently falls back to a default.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from training.errors import InputError

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.yaml")
Config = dict[str, Any]

CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("labels", "barriers"): ("fixed", "volatility"),
    ("labels", "touch"): ("high_low", "close"),
    ("labels", "vertical_label"): ("zero", "sign"),
    ("cv", "method"): ("purged_kfold", "cpcv"),
}


def default_config() -> Config:
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


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
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise InputError(f"configuration key {where!r} must be true or false, got {value!r}")
        return value
    if isinstance(default, int | float) and not isinstance(value, bool):
        try:
            return type(default)(value) if isinstance(default, float) or float(value).is_integer() else float(value)
        except (TypeError, ValueError):
            raise InputError(f"configuration key {where!r} must be a number, got {value!r}") from None
    if isinstance(default, str) and not isinstance(value, str):
        raise InputError(f"configuration key {where!r} must be a string, got {value!r}")
    return value


def load_config(path: Path | None = None, overrides: Config | None = None) -> Config:
    """Defaults, then the YAML file at ``path``, then ``overrides`` (CLI options; None values ignored)."""
    config = default_config()
    if path is not None:
        if not Path(path).exists():
            raise InputError(f"configuration file {path} does not exist")
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"configuration file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise InputError(f"configuration file {path} must hold a mapping at the top level")
        config = _merge(config, loaded)
    if overrides:
        pruned = {section: {k: v for k, v in values.items() if v is not None} for section, values in overrides.items()}
        config = _merge(config, {s: v for s, v in pruned.items() if v})
    _validate(config)
    return config


def _validate(config: Config) -> None:
    for (section, key), allowed in CHOICES.items():
        if config[section][key] not in allowed:
            raise InputError(f"{section}.{key} must be one of {', '.join(allowed)}, got {config[section][key]!r}")
    labels = config["labels"]
    for key in ("profit_taking", "stop_loss"):
        if not labels[key] > 0:
            raise InputError(f"labels.{key} must be positive, got {labels[key]}")
    if not (isinstance(labels["horizon"], int) and labels["horizon"] >= 1):
        raise InputError(f"labels.horizon must be a whole number of bars >= 1, got {labels['horizon']}")
    if not 0 < config["split"]["train_fraction"] < 1:
        raise InputError("split.train_fraction must be between 0 and 1")
    for section in ("split", "cv"):
        if not 0 <= config[section]["embargo"] < 0.5:
            raise InputError(f"{section}.embargo must be a fraction in [0, 0.5)")
    if not 0 < config["weights"]["time_decay"] <= 1:
        raise InputError("weights.time_decay must be in (0, 1]")
    if config["target"] not in ("binary", "multiclass"):
        raise InputError(f"target must be binary or multiclass, got {config['target']!r}")


def fingerprint_text(config: Config) -> str:
    """Canonical JSON of the configuration, for fingerprints: key order never changes a hash."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
