"""``python -m benchmarks.drift_replay``: the drift judgement's false-alarm rate and its detection delay.

The bundled data's last 250 sessions are replayed one at a time against a reference recorded (as ``train``
records it) from every earlier session's model inputs, nothing changed: each session that alarms is a false
alarm. Then the volume of every bar from one session on is multiplied by ten (prices untouched) and the
sessions until the first alarm are counted, for several starting sessions. Two judgements a session could be
given instead are measured beside it on the same sessions: a one-sample KS of the session's rows against the
training rows, and a KS of a rolling window's session medians. No service is needed: the inputs are computed
from the file with the project's own indicator and scale-free code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.indicators.compute import compute_panel
from training.indicators.definitions import INDICATORS
from training.indicators.scale_free import scale_free_forms
from training.infra.environment import PROJECT_ROOT
from training.ingestion.bar_files import clean_chunks, read_chunks
from training.model.input_distribution import input_distribution
from training.serving.drift import DriftReport, check_drift, reference_cdf

BUNDLED = PROJECT_ROOT / "data" / "stocks.csv.gz"
REPLAYED = 250
SHIFT_STARTS = (240, 200, 150, 100, 50, 10)  # sessions before the end where the tenfold volume begins
WINDOW = 20  # sessions in the rolling window of the rejected windowed judgement


def bars_of(path: Path = BUNDLED) -> pd.DataFrame:
    """The file's bars as ``ingest`` stores them, indicator inputs split/dividend-adjusted."""
    clean = pd.concat([chunk.bars for chunk in clean_chunks(read_chunks(path))], ignore_index=True)
    adjusted = {c: clean[f"adj_{c}"] for c in ("open", "high", "low", "close", "volume")}
    return pd.DataFrame({"symbol": clean["symbol"], "event_timestamp": clean["event_timestamp"], **adjusted})


def model_inputs(bars: pd.DataFrame) -> pd.DataFrame:
    """The model service's inputs per (symbol, session), complete rows only (as training keeps them)."""
    ordered = bars.sort_values(["symbol", "event_timestamp"], ignore_index=True)
    panel = compute_panel(ordered)
    forms = scale_free_forms({**{c: panel[c] for c in panel.columns}, "close": ordered["close"],
                              "volume": ordered["volume"]})  # fmt: skip
    already = {i.name: panel[i.name] for i in INDICATORS if i.scale_free == "already"}
    inputs = pd.DataFrame({"symbol": panel["symbol"], "event_timestamp": panel["event_timestamp"], **forms, **already})
    return inputs.dropna(ignore_index=True)


@dataclass(frozen=True)
class Replay:
    sessions: int
    false_alarms: list[str]  # sessions (dates) that alarmed with nothing changed
    delays: dict[str, int | None]  # shift start -> sessions until the first alarm (1: the shifted session itself)
    row_ks_false_alarms: int  # the one-sample KS of each session's rows (-1: not measured)
    window_ks_false_alarms: int  # a KS of the last WINDOW sessions' medians (-1: not measured)

    @property
    def false_alarm_rate(self) -> float:
        return len(self.false_alarms) / self.sessions


def _reference(rows: pd.DataFrame, names: list[str]) -> dict:
    return input_distribution(((n, rows[n].to_numpy()) for n in names), len(rows), rows["event_timestamp"].to_numpy())


def _alarms(judge: Callable[[pd.DataFrame], DriftReport], inputs: pd.DataFrame, sessions) -> list:
    by_session = dict(tuple(inputs.groupby("event_timestamp")))
    return [day for day in sessions if judge(by_session[day]).drifted]


def replay(alpha: float = 0.01, shift_starts: tuple[int, ...] = SHIFT_STARTS, rejected: bool = True) -> Replay:
    """``rejected``: measure the two rejected judgements too (the slow part)."""
    from scipy.stats import kstest

    bars = bars_of()
    inputs = model_inputs(bars)
    names = [c for c in inputs.columns if c not in ("symbol", "event_timestamp")]
    sessions = np.sort(inputs["event_timestamp"].unique())
    replayed = sessions[-REPLAYED:]
    reference = _reference(inputs[inputs["event_timestamp"] < replayed[0]], names)
    threshold = alpha / len(names)

    def judge(session: pd.DataFrame) -> DriftReport:
        return check_drift(reference, session[names], alpha)

    false_alarms = _alarms(judge, inputs, replayed)
    delays: dict[str, int | None] = {}
    for back in shift_starts:
        start = sessions[-back]
        shifted = bars.assign(volume=np.where(bars["event_timestamp"] >= start, bars["volume"] * 10, bars["volume"]))
        after = model_inputs(shifted)
        alarms = _alarms(judge, after, [day for day in sessions if day >= start])
        delays[str(pd.Timestamp(start).date())] = (
            int(np.searchsorted(sessions, alarms[0]) - np.searchsorted(sessions, start)) + 1 if alarms else None
        )

    if not rejected:
        return Replay(len(replayed), [str(pd.Timestamp(d).date()) for d in false_alarms], delays, -1, -1)
    rows = {n: reference_cdf(reference["percentiles"][n], reference["probabilities"]) for n in names}
    medians = {n: reference_cdf(reference["session_medians"][n], reference["probabilities"]) for n in names}
    by_session = dict(tuple(inputs.groupby("event_timestamp")))
    row_ks = sum(
        any(kstest(by_session[day][n].to_numpy(), rows[n]).pvalue < threshold for n in names) for day in replayed
    )
    daily = inputs.groupby("event_timestamp")[names].median()
    window_ks = sum(
        any(kstest(daily.loc[:day].iloc[-WINDOW:][n].to_numpy(), medians[n]).pvalue < threshold for n in names)
        for day in replayed
    )
    return Replay(len(replayed), [str(pd.Timestamp(d).date()) for d in false_alarms], delays, row_ks, window_ks)


def main() -> None:
    result = replay()
    print(f"sessions replayed: {result.sessions} (alpha 0.01, Bonferroni over the inputs)")
    print(f"session median vs training sessions: {len(result.false_alarms)} false alarm(s), "
          f"{result.false_alarm_rate:.1%} {result.false_alarms}")  # fmt: skip
    print(f"volume x10 from a session on, sessions until the first alarm: {result.delays}")
    print(f"rejected: one-sample KS of the session's rows: {result.row_ks_false_alarms} false alarm(s); "
          f"KS of a {WINDOW}-session window of medians: {result.window_ks_false_alarms}")  # fmt: skip


if __name__ == "__main__":
    main()
