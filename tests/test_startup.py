"""Commands that do not need Feast never import it: `import feast` alone costs seconds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import BUNDLED_DATA

PROBE = """
import json, sys
from training.cli import cli
try:
    cli.main({args}, prog_name="training", standalone_mode=False)
finally:
    print(json.dumps(sorted(m for m in ("feast", "mlflow", "lightgbm") if m in sys.modules)))
"""


def imported_by(*args: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("services",),
        ("ingest", str(BUNDLED_DATA)),
        ("compute-features",),
        ("build-dataset", "--help"),
        ("predict", "--help"),
    ],
)
def test_commands_without_feast_work_do_not_import_it(pipeline, args):
    assert "feast" not in imported_by(*args)


def test_train_and_the_audit_do_not_import_feast(bundled_dataset, tmp_path):
    folder, _ = bundled_dataset
    assert "feast" not in imported_by("verify-leakage", "--dataset", str(folder), "--skip-rebuild")
    imported = imported_by("train", "--dataset", str(folder), "--results", str(tmp_path / "r.json"), "--skip-audit")
    assert "feast" not in imported and "lightgbm" in imported  # the probe does see what a command imports
