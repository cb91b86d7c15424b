"""tune's search space: each configuration key searched, with its range or its choices, as Optuna suggests it.

A dimension is ``{low, high}`` (whole numbers when both bounds are; ``log: true`` samples on a log scale) or
``{choices: [...]}``. Only the model and the labels are searched: the symbols and the target kind make the trial
family (:mod:`training.model.trials`), and CV, weights and split settings are how trials are judged. A list
choice (``model.feature_families``) is offered to Optuna as one text, its items joined by ``+``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.errors import InputError

SEARCHED_SECTIONS = ("model", "labels")
LIST_JOIN = "+"


@dataclass(frozen=True)
class Dimension:
    key: str  # "section.name"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    @property
    def section(self) -> str:
        return self.key.split(".")[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws for this key."""
        if self.choices:
            encoded = [LIST_JOIN.join(c) if isinstance(c, list) else c for c in self.choices]
            drawn = trial.suggest_categorical(self.key, encoded)
            return self.choices[encoded.index(drawn)]
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)

    def extremes(self) -> list[Any]:
        """Values every other one lies between: checked against the configuration before any trial runs."""
        return list(self.choices) if self.choices else [self.low, self.high]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_space(space: dict[str, Any]) -> list[Dimension]:
    """The dimensions of ``tune.space``; a malformed entry is refused in one line naming its key."""
    dimensions = []
    for key, spec in space.items():
        where = f"configuration key 'tune.space.{key}'"
        if key.count(".") != 1 or key.split(".")[0] not in SEARCHED_SECTIONS:
            raise InputError(f"{where}: only {' and '.join(SEARCHED_SECTIONS)} keys are searched (model.num_leaves)")
        if not isinstance(spec, dict):
            raise InputError(f"{where} must be a mapping: {{low, high[, log]}} or {{choices: [...]}}")
        if set(spec) == {"choices"}:
            if not isinstance(spec["choices"], list) or not spec["choices"]:
                raise InputError(f"{where}: choices must be a non-empty list")
            dimensions.append(Dimension(key, choices=tuple(spec["choices"])))
            continue
        if not {"low", "high"} <= set(spec) <= {"low", "high", "log"}:
            raise InputError(f"{where} must be {{low, high[, log]}} or {{choices: [...]}}, got keys {sorted(spec)}")
        low, high, log = spec["low"], spec["high"], spec.get("log", False)
        if not (_number(low) and _number(high) and low < high):
            raise InputError(f"{where}: low and high must be numbers with low < high, got {low!r} and {high!r}")
        if not isinstance(log, bool) or (log and low <= 0):
            raise InputError(f"{where}: log must be true or false, and a log scale needs low > 0")
        dimensions.append(Dimension(key, low, high, log))
    return dimensions


def overrides(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"model.num_leaves": 15} as the nested mapping :meth:`PipelineConfig.with_sections` overlays."""
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    return nested
