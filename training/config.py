"""The pipeline configuration: packaged defaults (equal to the SPEC), a user's YAML file, CLI overrides.

One pydantic model per section, with bounds and choices on the fields and ``extra="forbid"``:
:func:`load_config` refuses an unknown key, a wrong type or an out-of-range value in one line naming the key,
so a typo never silently falls back to a default and a bad value never reaches LightGBM or the splitters as
a traceback. :meth:`PipelineConfig.dump` is the plain dict that goes into dataset metadata, fingerprints,
leakage reports and MLflow; its keys, key order and value types are those of ``default_config.yaml``, so
a hash of the same values never changes.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from training.contract import DEFAULT_FEATURE_SERVICE
from training.errors import InputError
from training.indicators.definitions import Family
from training.search_space import parse_space

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.yaml")

# Hold-out metrics a run can be promoted on, and whether higher is better.
PROMOTE_METRICS: dict[str, bool] = {
    "roc_auc": True,
    "accuracy": True,
    "f1": True,
    "information_coefficient": True,
    "backtest_sharpe": True,
    "log_loss": False,
}
DATASET_SECTIONS = ("data", "features", "labels", "target", "weights", "split")  # what build-dataset decides
UNHASHED_KEYS = (("mlflow", "promote_metric"), ("mlflow", "promote_min_improvement"))
# How a served model is watched, how predictions are ranked across symbols, what tune searches and how
# meta-label sizes bets say nothing about the rows or the model one run fits: neither in fingerprints nor
# in trial keys.
UNHASHED_SECTIONS = ("monitoring", "cross_section", "tune", "meta_labeling")
RUN_NAME_FIELDS = {"feature_service": "x", "horizon": 5, "timestamp": "x"}
# Each CPCV split fits a model and its folds are recorded: beyond this many, a run takes days and its fold
# record gigabytes; CPCV's usual settings (6 groups and 2 test groups: 15 splits, 12 and 3: 220) sit well below.
MAX_CPCV_SPLITS = 1_000


def _refuse(kind: str) -> PydanticCustomError:
    return PydanticCustomError("config_type", kind)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refuse("must be a number")
    return float(value)


def _whole(value: Any) -> int:
    number = _number(value)
    if not math.isfinite(number) or not number.is_integer():
        raise _refuse("must be a whole number")
    return int(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _refuse("must be true or false")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _refuse("must be a string")
    return value


def _name(value: Any) -> str:
    if not _text(value).strip():
        raise _refuse("must be a non-empty name")
    return value


def _day(value: Any) -> str | None:
    """A date as YYYY-MM-DD (YAML reads an unquoted date as a date object)."""
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
    raise _refuse("must be a date YYYY-MM-DD or null")


def _symbols(value: Any) -> list[str] | None:
    """Null, "AAPL,MSFT" or a list of non-empty strings."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(s, str) and s.strip() for s in items):
        raise _refuse("must be null or a list of symbol names")
    return [s.strip() for s in items]


Number = Annotated[float, BeforeValidator(_number), Field(allow_inf_nan=False)]
Whole = Annotated[int, BeforeValidator(_whole)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Text = Annotated[str, BeforeValidator(_text)]
Name = Annotated[str, BeforeValidator(_name)]
Positive = Annotated[Number, Gt(0)]
NonNegative = Annotated[Number, Ge(0)]
Share = Annotated[Number, Gt(0), Le(1)]
Fraction = Annotated[Number, Gt(0), Lt(1)]
Embargo = Annotated[Number, Ge(0), Lt(0.5)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DataConfig(Section):
    symbols: Annotated[list[str] | None, BeforeValidator(_symbols)] = None
    start: Annotated[str | None, BeforeValidator(_day)] = None
    end: Annotated[str | None, BeforeValidator(_day)] = None


_LAG_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _lag(value: Any) -> str:
    """A publication lag as canonical whole seconds ("15m" -> "900s"), so equal lags hash alike."""
    text = _text(value).strip()
    unit = _LAG_UNITS.get(text[-1:])
    try:
        seconds = float(text[:-1]) * unit if unit else math.nan
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0 or not seconds.is_integer():
        raise _refuse('must be a duration of whole seconds >= 0 such as "0s", "90s", "15m", "2h" or "1d"')
    return f"{int(seconds)}s"


class DecisionTimeConfig(Section):
    """Join each sample's features as known at its decision time (training.feast_store.decision_time): a
    feature version written at c is usable from c + publication_lag; a sample at t takes the version usable
    then. Off: the event-time join (the newest version of the newest bar at or before t)."""

    enabled: Flag = False
    publication_lag: Annotated[str, BeforeValidator(_lag)] = "0s"

    @property
    def lag(self) -> timedelta:
        return timedelta(seconds=int(self.publication_lag[:-1]))


class FeaturesConfig(Section):
    feature_service: Annotated[str, BeforeValidator(lambda v: DEFAULT_FEATURE_SERVICE if v is None else _text(v))]
    # Dumped only when enabled, so datasets built by event time keep their fingerprints.
    decision_time: DecisionTimeConfig = DecisionTimeConfig()

    @model_serializer(mode="wrap")
    def _decision_time_when_enabled(self, handler: Any) -> dict[str, Any]:
        dumped = handler(self)
        if not self.decision_time.enabled:
            dumped.pop("decision_time", None)
        return dumped


class LabelsConfig(Section):
    profit_taking: Positive
    stop_loss: Positive
    horizon: Annotated[Whole, Ge(1)]
    barriers: Literal["fixed", "volatility"]
    volatility_span: Annotated[Whole, Ge(2)]
    touch: Literal["high_low", "close"]
    vertical_label: Literal["zero", "sign"]


class WeightsConfig(Section):
    uniqueness: Flag
    return_attribution: Flag
    time_decay: Share
    class_balance: Flag


class SplitConfig(Section):
    train_fraction: Fraction
    embargo: Embargo


class CVConfig(Section):
    """Purged K-fold cuts the training rows into ``n_folds`` folds; CPCV into ``n_groups`` groups, tests every
    combination of ``test_groups`` of them. ``n_splits`` (both counts) and ``cpcv_test_groups`` are the old names.

    Dumped under the old names (``n_splits`` = the count the method uses), so fingerprints, config hashes and
    leakage reports of the same cross-validation do not change.
    """

    method: Literal["purged_kfold", "cpcv"]
    n_folds: Annotated[Whole, Ge(2)] = Field(validation_alias=AliasChoices("n_folds", "n_splits"))
    n_groups: Annotated[Whole, Ge(2)] = Field(validation_alias=AliasChoices("n_groups", "n_splits"))
    embargo: Embargo
    test_groups: Annotated[Whole, Ge(1)] = Field(validation_alias=AliasChoices("test_groups", "cpcv_test_groups"))

    @model_validator(mode="before")
    @classmethod
    def _one_name_each(cls, values: Any) -> Any:
        if isinstance(values, dict):
            for old, new in (("n_splits", "n_folds"), ("n_splits", "n_groups"), ("cpcv_test_groups", "test_groups")):
                if old in values and new in values:
                    raise InputError(f"configuration keys 'cv.{old}' and 'cv.{new}' name the same setting: set one")
        return values

    @model_validator(mode="after")
    def _feasible(self) -> CVConfig:
        if self.method != "cpcv":
            return self
        if not self.test_groups < self.n_groups:
            raise InputError(
                f"configuration key 'cv.test_groups' must be below cv.n_groups ({self.n_groups}), "
                f"got {self.test_groups}"
            )
        splits = math.comb(self.n_groups, self.test_groups)
        if splits > MAX_CPCV_SPLITS:
            raise InputError(
                f"configuration keys 'cv.n_groups' = {self.n_groups} and 'cv.test_groups' = {self.test_groups} mean "
                f"{splits:,} CPCV splits, above the cap of {MAX_CPCV_SPLITS:,} (each fits a model): use fewer groups"
            )
        return self

    @property
    def count(self) -> int:
        """What the method cuts the rows into: folds, or CPCV's groups."""
        return self.n_groups if self.method == "cpcv" else self.n_folds

    @model_serializer
    def _legacy_names(self) -> dict[str, Any]:
        return {"method": self.method, "n_splits": self.count, "embargo": self.embargo,
                "cpcv_test_groups": self.test_groups}  # fmt: skip


class ModelConfig(Section):
    objective: Literal["binary", "cross_entropy"]  # the multiclass objective follows from the target
    num_leaves: Annotated[Whole, Ge(2), Le(131072)]
    learning_rate: Positive
    max_depth: Annotated[Whole, Ge(-1)]
    feature_fraction: Share
    bagging_fraction: Share
    bagging_freq: Annotated[Whole, Ge(0)]
    lambda_l1: NonNegative
    lambda_l2: NonNegative
    seed: Annotated[Whole, Ge(0), Le(2**31 - 1)]
    num_boost_round: Annotated[Whole, Ge(1)]
    early_stopping_rounds: Annotated[Whole, Ge(1)]
    early_stopping_fraction: Annotated[Number, Gt(0), Le(0.5)]
    # The indicator families (training.indicators.definitions.FAMILIES) whose features the model sees; null =
    # every feature of the dataset. Dumped only when set, so configurations without it hash as before.
    feature_families: list[Family] | None = None

    @model_serializer(mode="wrap")
    def _families_when_set(self, handler: Any) -> dict[str, Any]:
        dumped = handler(self)
        if dumped.get("feature_families") is None:
            dumped.pop("feature_families", None)
        return dumped


class BacktestConfig(Section):
    cost_bps: NonNegative


class MlflowConfig(Section):
    experiment: Name
    run_name: Text
    registered_model: Name
    promote_metric: Literal[tuple(PROMOTE_METRICS)]  # type: ignore[valid-type]
    promote_min_improvement: NonNegative

    @model_validator(mode="after")
    def _run_name_fields(self) -> MlflowConfig:
        try:
            self.run_name.format(**RUN_NAME_FIELDS)
        except (KeyError, IndexError, ValueError) as exc:
            fields = ", ".join("{" + f + "}" for f in RUN_NAME_FIELDS)
            raise InputError(
                f"configuration key 'mlflow.run_name' may only use the fields {fields}, got {self.run_name!r} ({exc})"
            ) from None
        return self


class MonitoringConfig(Section):
    drift_alpha: Fraction
    experiment: Name


class MetaLabelingConfig(Section):
    primary: Literal["crossover", "model"]
    fast: Name
    slow: Name
    step: Share


class CrossSectionConfig(Section):
    top_k: Annotated[Whole, Ge(1)]


class TuneConfig(Section):
    """What ``tune`` searches: ``space`` maps a configuration key (``model.num_leaves``, ``labels.horizon``,
    ``model.feature_families``) to ``{low, high[, log]}`` (whole numbers when both bounds are) or ``{choices}``."""

    trials: Annotated[Whole, Ge(1)]
    n_jobs: Annotated[Whole, Ge(1)]
    seed: Annotated[Whole, Ge(0)]
    objective: Literal["sharpe", "roc_auc", "log_loss", "rank_ic"]
    space: dict[str, dict[str, Any]]

    @model_validator(mode="after")
    def _known_keys(self) -> TuneConfig:
        parse_space(self.space)  # refuses an unknown key or a malformed range in one line
        return self


class PipelineConfig(Section):
    """Sections in the order of default_config.yaml, which is the order of :meth:`dump`."""

    data: DataConfig
    features: FeaturesConfig
    labels: LabelsConfig
    target: Literal["binary", "multiclass"]
    weights: WeightsConfig
    split: SplitConfig
    cv: CVConfig
    model: ModelConfig
    backtest: BacktestConfig
    mlflow: MlflowConfig
    monitoring: MonitoringConfig
    meta_labeling: MetaLabelingConfig
    cross_section: CrossSectionConfig
    tune: TuneConfig

    def dump(self) -> dict[str, Any]:
        """The plain dict recorded with datasets and runs (and hashed): the YAML's keys, order and types."""
        return self.model_dump()

    def with_sections(self, sections: dict[str, Any]) -> PipelineConfig:
        """These sections' values (e.g. a dataset's own, from its metadata) in place of this configuration's."""
        return _overlay(self, sections)


Config = PipelineConfig


def cv_of(values: dict[str, Any]) -> CVConfig:
    """A recorded cv mapping (a run's cv_splits.json, a leakage report: the dumped names) as the model."""
    try:
        return CVConfig.model_validate(dict(values))
    except ValidationError as exc:
        raise InputError(_one_line(exc.errors()[0], "cv.")) from None


def _names(name: str, field: FieldInfo) -> tuple[str, ...]:
    alias = field.validation_alias
    return tuple(alias.choices) if isinstance(alias, AliasChoices) else (name,)  # type: ignore[arg-type]


def _overlay(base: BaseModel, given: dict[str, Any], path: str = "") -> Any:
    """``base`` with the values ``given`` names (nested sections merged key by key), validated as a whole."""
    fields = type(base).model_fields
    known = {key for name, field in fields.items() for key in _names(name, field)}
    for key in given:
        if key not in known:
            raise InputError(f"unknown configuration key '{path}{key}'; known keys here: {', '.join(fields)}")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        named = [key for key in _names(name, field) if key in given]
        current = getattr(base, name)
        if not named:
            values[name] = current
        elif isinstance(current, BaseModel) and isinstance(given[named[0]], dict):
            values[name] = _overlay(current, given[named[0]], f"{path}{name}.")
        else:
            values.update({key: given[key] for key in named})
    try:
        return type(base).model_validate(values)
    except ValidationError as exc:
        raise InputError(_one_line(exc.errors()[0], path)) from None


def _one_line(error: Any, path: str) -> str:
    """A pydantic error as this project's one line: the key, what it must be, what it got."""
    where = path + ".".join(str(part) for part in error["loc"])
    value = error.get("input")
    if error["type"] == "missing":
        return f"configuration key {where!r} must be set"
    if value is None:
        return f"configuration key {where!r} must be set, got null"
    if error["type"] == "config_type":
        return f"configuration key {where!r} {error['msg']}, got {value!r}"
    if error["type"] in ("model_type", "dict_type"):
        return f"configuration key {where!r} must be a mapping"
    if error["type"] == "list_type":
        return f"configuration key {where!r} must be a list or null, got {value!r}"
    if any(isinstance(part, int) for part in error["loc"]):  # an item of a list (model.feature_families)
        return f"configuration key {where!r} must be {error['ctx']['expected']}, got {value!r}"
    field = _field(where)
    if error["type"] == "literal_error":
        return f"configuration key {where!r} must be one of {', '.join(get_args(field.annotation))}, got {value!r}"
    if field.annotation is float and isinstance(value, int):
        value = float(value)  # as the value would have been read
    return f"configuration key {where!r} must be {_describe(field)}, got {value!r}"


def _field(where: str) -> FieldInfo:
    model: Any = PipelineConfig
    for part in where.split("."):
        field = next(f for name, f in model.model_fields.items() if part in _names(name, f))
        model = field.annotation
    return field


def _describe(field: FieldInfo) -> str:
    """The allowed values of a numeric field from its bounds: 'a whole number in [2, 131072]'."""
    kind = "a whole number" if field.annotation is int else "a number"
    low = next(((m.gt, "(") if isinstance(m, Gt) else (m.ge, "[") for m in field.metadata if isinstance(m, Gt | Ge)),
               None)  # fmt: skip
    high = next(((m.lt, ")") if isinstance(m, Lt) else (m.le, "]") for m in field.metadata if isinstance(m, Lt | Le)),
                None)  # fmt: skip
    if low and high:
        return f"{kind} in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
    if low:
        return f"{kind} {'>' if low[1] == '(' else '>='} {low[0]:g}"
    return kind


def _read_file(path: Path) -> dict[str, Any]:
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


def default_config() -> PipelineConfig:
    """The packaged defaults, with the model's feature service named where the YAML leaves it null."""
    try:
        return PipelineConfig.model_validate(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    except ValidationError as exc:
        raise InputError(_one_line(exc.errors()[0], "")) from None


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults, then the YAML file at ``path``, then ``overrides`` (CLI options; None values ignored)."""
    config = default_config()
    if path is not None:
        config = _overlay(config, _read_file(path))
    if overrides:
        pruned = {section: {k: v for k, v in values.items() if v is not None} for section, values in overrides.items()}
        config = _overlay(config, {s: v for s, v in pruned.items() if v})
    return config


def refuse_contradicting_dataset(path: Path | None, built: dict[str, Any]) -> None:
    """Refuse a config file that sets a dataset setting (data, labels, ...) other than the dataset's own.

    train and verify-leakage take those sections from the dataset; silently preferring them over the file
    would leave the user believing the file applied. Repeating the dataset's values is fine.
    """
    if path is None:
        return
    loaded = _read_file(path)
    merged = _overlay(default_config(), loaded).dump()  # the file's keys, validated and normalised
    for section in (s for s in DATASET_SECTIONS if s in loaded):
        given = loaded[section]
        pairs = [(k, merged[section][k]) for k in given] if isinstance(given, dict) else [(None, merged[section])]
        for key, value in pairs:
            stored = built.get(section) if key is None else (built.get(section) or {}).get(key)
            if value != stored:
                name = section if key is None else f"{section}.{key}"
                raise InputError(
                    f"{path} sets {name} = {value!r} but the dataset was built with {stored!r}; the dataset settings "
                    f"({', '.join(DATASET_SECTIONS)}) come from the dataset: rebuild it with build-dataset --config "
                    f"{path}, or drop them from this file"
                )


def fingerprint_text(config: PipelineConfig | dict[str, Any]) -> str:
    """Canonical JSON of the configuration, for fingerprints: key order never changes a hash.

    How a trained model gets promoted or watched says nothing about the rows, so those keys are left out: a
    dataset built before they existed keeps its fingerprint, and changing them never invalidates a dataset.
    """
    dumped = config.dump() if isinstance(config, PipelineConfig) else config
    hashed = {k: dict(v) if isinstance(v, dict) else v for k, v in dumped.items() if k not in UNHASHED_SECTIONS}
    for section, key in UNHASHED_KEYS:
        if isinstance(hashed.get(section), dict):
            hashed[section].pop(key, None)
    return json.dumps(hashed, sort_keys=True, separators=(",", ":"), default=str)
