"""The one definition table of the 23 technical indicators.

Computation (:mod:`training.indicators.compute`), the Feast schemas (``feature_repo/``), the scale-free
transformations served to the model and the README's feature list are all generated from ``INDICATORS``;
nothing lists the features a second time.

Each row names a TA-Lib function and its parameters (or a formula over bars), so the warm-up of every
feature is *derived* from TA-Lib's own lookback for those parameters rather than typed in by hand: MACD's
signal line needs 33 prior bars in TA-Lib's convention, and that number comes from TA-Lib.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

Family = Literal["trend", "momentum", "volatility", "volume", "price_action"]
FAMILIES: tuple[Family, ...] = ("trend", "momentum", "volatility", "volume", "price_action")

# How a feature becomes comparable across symbols: "already" (a ratio or an oscillator), "relative"
# (a level divided by the reference column, minus one) or "ratio" (a difference of levels divided by it).
ScaleFree = Literal["already", "relative", "ratio"]

MACD_PARAMS = {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9}
BBANDS_PARAMS = {"timeperiod": 20, "nbdevup": 2.0, "nbdevdn": 2.0, "matype": 0}


@dataclass(frozen=True)
class Indicator:
    """One feature: where its value comes from, how much history it needs, how to make it scale-free."""

    name: str
    family: Family
    description: str
    inputs: tuple[str, ...]
    function: str | None = None  # TA-Lib function; None for a pure formula over the bar
    params: dict[str, float] = field(default_factory=dict)
    output: str | None = None  # which TA-Lib output (multi-output functions) when no formula applies
    formula: str | None = None  # key into compute.FORMULAS for values derived from outputs or bars
    shift: int = 0  # extra bars a formula looks back beyond the TA-Lib call (previous volume: 1)
    scale_free: ScaleFree = "already"
    reference: Literal["close", "volume"] | None = None  # the denominator of the scale-free form

    @cached_property
    def lookback(self) -> int:
        """Bars of history before the first valid value, from TA-Lib's own lookback for these params."""
        base = 0
        if self.function is not None:
            from talib import abstract

            function = abstract.Function(self.function)
            function.set_parameters(self.params)
            base = int(function.lookback)
        return base + self.shift

    @property
    def model_feature(self) -> str:
        """Name of the form the model sees (scale-free), the same online and offline."""
        return self.name + {"already": "", "relative": "_rel", "ratio": "_norm"}[self.scale_free]


def _sma(name: str, family: Family, source: str, n: int, reference: Literal["close", "volume"]) -> Indicator:
    return Indicator(
        name=name,
        family=family,
        description=f"simple moving average of {source} over {n} bars",
        inputs=(source,),
        function="SMA",
        params={"timeperiod": n},
        scale_free="relative",
        reference=reference,
    )


def _roc(n: int) -> Indicator:
    return Indicator(
        name=f"roc_{n}",
        family="momentum",
        description=f"rate of change of close over {n} bar(s), in percent (TA-Lib ROC)",
        inputs=("close",),
        function="ROC",
        params={"timeperiod": n},
    )


INDICATORS: tuple[Indicator, ...] = (
    # trend
    _sma("sma_5", "trend", "close", 5, "close"),
    _sma("sma_10", "trend", "close", 10, "close"),
    _sma("sma_20", "trend", "close", 20, "close"),
    *(
        Indicator(
            name=f"ema_{n}",
            family="trend",
            description=f"exponential moving average of close, span {n} (seeded by an SMA, TA-Lib)",
            inputs=("close",),
            function="EMA",
            params={"timeperiod": n},
            scale_free="relative",
            reference="close",
        )
        for n in (12, 26)
    ),
    # momentum
    Indicator(
        name="rsi_14",
        family="momentum",
        description="relative strength index over 14 bars (Wilder smoothing)",
        inputs=("close",),
        function="RSI",
        params={"timeperiod": 14},
    ),
    _roc(1),
    _roc(5),
    _roc(10),
    *(
        Indicator(
            name=name,
            family="momentum",
            description=description,
            inputs=("close",),
            function="MACD",
            params=MACD_PARAMS,
            output=output,
            scale_free="ratio",
            reference="close",
        )
        for name, output, description in (
            ("macd", "macd", "MACD line: EMA(12) − EMA(26) of close"),
            ("macd_signal", "macdsignal", "signal line: EMA(9) of the MACD line"),
            ("macd_hist", "macdhist", "MACD line − signal line"),
        )
    ),
    # volatility
    Indicator(
        name="atr_14",
        family="volatility",
        description="average true range over 14 bars (Wilder smoothing)",
        inputs=("high", "low", "close"),
        function="ATR",
        params={"timeperiod": 14},
        scale_free="ratio",
        reference="close",
    ),
    *(
        Indicator(
            name=f"bb_{band}",
            family="volatility",
            description=description,
            inputs=("close",),
            function="BBANDS",
            params=BBANDS_PARAMS,
            output=f"{band}band",
            scale_free="relative",
            reference="close",
        )
        for band, description in (
            ("upper", "upper Bollinger band: SMA(20) + 2 standard deviations of close"),
            ("middle", "middle Bollinger band: SMA(20) of close"),
            ("lower", "lower Bollinger band: SMA(20) − 2 standard deviations of close"),
        )
    ),
    Indicator(
        name="bb_width",
        family="volatility",
        description="Bollinger band width: (upper − lower) / middle",
        inputs=("close",),
        function="BBANDS",
        params=BBANDS_PARAMS,
        formula="bb_width",
    ),
    Indicator(
        name="bb_pct_b",
        family="volatility",
        description="Bollinger %B: (close − lower) / (upper − lower)",
        inputs=("close",),
        function="BBANDS",
        params=BBANDS_PARAMS,
        formula="bb_pct_b",
    ),
    # volume
    _sma("volume_sma_5", "volume", "volume", 5, "volume"),
    _sma("volume_sma_20", "volume", "volume", 20, "volume"),
    Indicator(
        name="volume_change",
        family="volume",
        description="volume / previous bar's volume − 1",
        inputs=("volume",),
        formula="volume_change",
        shift=1,
    ),
    # price action
    Indicator(
        name="high_low_ratio",
        family="price_action",
        description="high / low of the bar",
        inputs=("high", "low"),
        formula="high_low_ratio",
    ),
    Indicator(
        name="close_open_ratio",
        family="price_action",
        description="close / open of the bar",
        inputs=("close", "open"),
        formula="close_open_ratio",
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(i.name for i in INDICATORS)

# Bar columns stored beside the indicators: the denominators of the scale-free forms. They are the
# (adjusted) inputs the indicators were computed from, not features of their own.
REFERENCE_COLUMNS: dict[str, Family] = {"close": "price_action", "volume": "volume"}


def by_family(family: Family) -> tuple[Indicator, ...]:
    return tuple(i for i in INDICATORS if i.family == family)


def warmup_bars(indicators: tuple[Indicator, ...] = INDICATORS) -> int:
    """Bars a symbol needs before every feature is defined: the longest lookback in the table."""
    return max(i.lookback for i in indicators)


def markdown_table() -> str:
    """The README's feature list, generated from the table."""
    lines = [
        "| feature | family | definition | TA-Lib call | warm-up bars | model form |",
        "|---|---|---|---|---|---|",
    ]
    for i in INDICATORS:
        call = f"{i.function}({', '.join(f'{k}={v}' for k, v in i.params.items())})" if i.function else "—"
        form = f"`{i.name}`" if i.scale_free == "already" else f"`{i.model_feature}` = {_form(i)}"
        lines.append(f"| `{i.name}` | {i.family} | {i.description} | {call} | {i.lookback} | {form} |")
    return "\n".join(lines)


def _form(indicator: Indicator) -> str:
    if indicator.scale_free == "relative":
        return f"{indicator.name} / {indicator.reference} − 1"
    return f"{indicator.name} / {indicator.reference}"
