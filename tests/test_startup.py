"""Commands that do not need Feast never import it: `import feast` alone costs seconds.

train and verify-leakage are checked where tests/test_train.py runs them anyway (``audited``, ``local_run``).
"""

from __future__ import annotations

import pytest

from tests.conftest import BUNDLED_DATA, imported_by


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
