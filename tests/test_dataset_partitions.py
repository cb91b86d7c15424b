"""build-dataset by symbol partition (issue 12): any partition size gives the same dataset, bit for bit.

One symbol per partition is the hardest case: every global quantity (the hold-out boundaries, time decay's
cumulative uniqueness per date, class balance, the normalising total) is gathered across partitions.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import run_cli
from training.dataset import artifact

VARYING = {"created_at", "known_at", "build_seconds", "parts", "partitions"}  # how or when, not what, was built


@pytest.fixture(scope="module")
def one_symbol_each(pipeline, tmp_path_factory, bundled_dataset):
    out = tmp_path_factory.mktemp("partitions") / "one-symbol-each"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OHLCV_PARTITION_BARS", "1")
        result = run_cli("build-dataset", "--out", str(out))
    assert result.exit_code == 0, result.output
    return artifact.load(out)


def test_one_symbol_per_partition_gives_the_same_rows_and_fingerprint(bundled_dataset, one_symbol_each):
    _, whole = bundled_dataset
    assert len(whole.metadata["parts"]) == 1
    assert [p["symbols"] for p in one_symbol_each.metadata["parts"]] == [[s, s] for s in whole.metadata["symbols"]]
    pd.testing.assert_frame_equal(one_symbol_each.frame, whole.frame, check_exact=True)
    assert one_symbol_each.metadata["fingerprint"] == whole.metadata["fingerprint"]
    same = {k: v for k, v in whole.metadata.items() if k not in VARYING}
    assert {k: v for k, v in one_symbol_each.metadata.items() if k not in VARYING} == same


def test_time_decay_and_return_attribution_are_partition_invariant_too(pipeline, tmp_path):
    """Every weight component on: the per-date cumulative uniqueness and the exact total across partitions."""
    config = tmp_path / "weights.yaml"
    config.write_text(
        "weights:\n  uniqueness: true\n  return_attribution: true\n  time_decay: 0.25\n  class_balance: true\n"
    )
    built = {}
    for bars in ("1", "5000", "100000000"):
        out = tmp_path / f"p{bars}"
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("OHLCV_PARTITION_BARS", bars)
            result = run_cli("build-dataset", "--config", str(config), "--symbols", "AAPL,FB,IBM", "--out", str(out))
        assert result.exit_code == 0, result.output
        built[bars] = artifact.load(out)
    assert [len(d.metadata["parts"]) for d in built.values()] == [3, 2, 1]
    whole = built["100000000"].frame
    assert {"w_uniqueness", "w_return_attribution", "w_time_decay", "w_class_balance"} <= set(whole.columns)
    for dataset in built.values():
        pd.testing.assert_frame_equal(dataset.frame, whole, check_exact=True)
        assert dataset.metadata["fingerprint"] == built["100000000"].metadata["fingerprint"]
    weights = whole.loc[whole["split"] == "train", "weight"]
    assert abs(weights.mean() - 1) < 1e-12


def test_a_part_is_read_by_column_without_the_rest(one_symbol_each):
    first = next(one_symbol_each.parts(["symbol", "weight"]))
    assert list(first.columns) == ["symbol", "weight"] and first["symbol"].nunique() == 1
    times = one_symbol_each.read(["event_timestamp", "symbol"])
    assert times.equals(one_symbol_each.frame[["event_timestamp", "symbol"]])


def test_an_artifact_of_the_previous_format_gets_a_clear_message(bundled_dataset, tmp_path):
    out, _ = bundled_dataset
    old = tmp_path / "old"
    old.mkdir()
    meta = json.loads((out / artifact.METADATA_FILE).read_text())
    meta["format_version"] = 1
    meta.pop("parts")
    (old / artifact.METADATA_FILE).write_text(json.dumps(meta))
    (old / artifact.LEGACY_DATA_FILE).write_bytes((out / artifact.part_name(0)).read_bytes())
    result = run_cli("verify-leakage", "--dataset", str(old))
    assert result.exit_code == 2, result.output
    assert "dataset format 1 (written by an earlier version) is not 2" in result.output
    assert "rebuild it with `python -m training build-dataset`" in result.output
    refused = run_cli("build-dataset", "--out", str(old), "--symbols", "IBM")  # nothing proves it is one of ours
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1, refused.output
    assert "(metadata.json does not describe a dataset of format 2); refusing to replace it" in refused.output
    assert "or delete it yourself" in refused.output and (old / artifact.LEGACY_DATA_FILE).exists()
