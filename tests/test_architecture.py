"""The package layering holds: no import cycle between the project's packages, and the engine is chosen in
one place.

A *unit* is a subpackage of ``training`` (``training.dataset``) or a top-level module (``training.config``).
Every import names a unit, at module level or inside a function (a lazy import is still a dependency), and
the units with their imports must form a DAG: a cycle means a stage reaches up into what is built on it.
"""

from __future__ import annotations

import graphlib
import inspect
import itertools
import re
from pathlib import Path

import pytest

from tests.test_audit_independence import imported

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "training"


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "training" and len(parts) > 1 else None


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def dependencies(root: Path) -> dict[str, dict[str, set[str]]]:
    """unit -> {imported unit -> the files importing it}, for every Python file under ``root``."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(root.rglob("*.py")):
        source = unit_of(module_name(path, root))
        if source is None:
            continue
        for name in imported(path):
            target = unit_of(name)
            if target and target != source:
                graph.setdefault(source, {}).setdefault(target, set()).add(str(path.relative_to(root.parent)))
    return graph


def cycle_of(graph: dict[str, dict[str, set[str]]]) -> list[str] | None:
    sorter = graphlib.TopologicalSorter({unit: set(targets) for unit, targets in graph.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return None


def test_no_import_cycle_between_packages():
    graph = dependencies(TRAINING)
    cycle = cycle_of(graph)
    if cycle:
        edges = [f"{a} -> {b} ({', '.join(sorted(graph[a][b]))})" for a, b in itertools.pairwise(cycle)]
        pytest.fail("import cycle between packages:\n  " + "\n  ".join(edges))


def test_the_cycle_check_catches_a_lazy_import_reaching_up(tmp_path):
    package = tmp_path / "training"
    for name, text in {
        "__init__.py": "",
        "infra/__init__.py": "",
        "infra/db.py": "def f():\n    from training.dataset import builder\n",
        "dataset/__init__.py": "",
        "dataset/builder.py": "from training.infra import db\n",
    }.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    graph = dependencies(package)
    assert graph == {
        "infra": {"dataset": {"training/infra/db.py"}},
        "dataset": {"infra": {"training/dataset/builder.py"}},
    }
    assert set(cycle_of(graph)) == {"infra", "dataset"}


def test_the_engine_is_chosen_in_one_place():
    """No stage asks which engine runs: they call training.engines.current_engine()."""
    asks = re.compile(r"engine\(\)\s*[!=]=|\.name\s*[!=]=\s*[\"'](postgres|spark)[\"']")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in (TRAINING, ROOT / "feature_repo")
        for path in folder.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if asks.search(line)
    ]
    assert found == []


def test_every_engine_implements_the_interface():
    from training.engines import IMPLEMENTATIONS, Engine
    from training.infra.environment import ENGINES

    assert sorted(IMPLEMENTATIONS) == sorted(ENGINES)
    wanted = {
        name: inspect.signature(member)
        for name, member in vars(Engine).items()
        if callable(member) and not name.startswith("_")
    }
    for spec in IMPLEMENTATIONS.values():
        module, name = spec.split(":")
        implementation = getattr(__import__(module, fromlist=[name]), name)
        assert implementation.name in ENGINES
        for method, signature in wanted.items():
            assert hasattr(implementation, method), f"{name} lacks {method}"
            assert inspect.signature(getattr(implementation, method)).parameters.keys() == signature.parameters.keys()


def test_the_engine_follows_the_setting(monkeypatch):
    from training.engines import current_engine

    monkeypatch.setenv("OHLCV_ENGINE", "spark")
    assert current_engine().name == "spark"
    monkeypatch.setenv("OHLCV_ENGINE", "Postgres ")
    assert current_engine().name == "postgres"


def test_a_command_an_engine_does_not_run_is_refused_in_one_line_before_anything(tmp_path):
    from click.testing import CliRunner

    from training.cli import cli

    bars = tmp_path / "bars.csv"
    bars.write_text("Date,Symbol,Open,High,Low,Close,Volume\n")
    result = CliRunner().invoke(cli, ["update", str(bars)], env={"OHLCV_ENGINE": "spark"})
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: update reads PostgreSQL's tables and does not run on OHLCV_ENGINE=spark yet; the lake profile "
        "covers ingest, compute-features, build-dataset, verify-leakage, train, Feast's historical retrieval, "
        "materialize and check-online (unset OHLCV_ENGINE)"
    ]


def test_every_table_keyed_by_engine_covers_every_engine():
    """Below training.engines, two places pick by the setting's name on purpose: Feast's configuration (which
    the engines use) and the audit's own bar reader (which must share no code with them)."""
    from training.infra.environment import ENGINES
    from training.infra.feast_yaml import FEAST_PROFILES
    from training.leakage.bars import _READERS

    assert sorted(FEAST_PROFILES) == sorted(_READERS) == sorted(ENGINES)
