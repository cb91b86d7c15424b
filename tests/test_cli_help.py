"""`--help` lists the commands in the order the pipeline runs them, under one program name."""

from __future__ import annotations

import subprocess
import sys

from training.cli import COMMANDS, PROG_NAME

PIPELINE = ["ingest", "compute-features", "feast", "build-dataset", "verify-leakage", "train", "tune", "importance",
            "meta-label", "materialize",
            "check-online", "predict", "serve", "update", "replay", "services"]  # fmt: skip


def test_help_lists_the_commands_in_pipeline_order_under_one_name():
    result = subprocess.run([sys.executable, "-m", "training", "--help"], capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    listed = [line.split()[0] for line in lines[lines.index("Commands:") + 1 :] if line.startswith("  ")]
    assert listed == PIPELINE == list(COMMANDS)
    assert lines[0].startswith(f"Usage: {PROG_NAME} ") and PROG_NAME == "python -m training"
    assert "ohlcv " not in result.stdout.lower().replace("ohlcv bars", "")
