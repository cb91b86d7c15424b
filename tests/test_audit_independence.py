"""The audit shares no code with what it audits: its modules' imports, parsed, name none of the audited code.

The rule (stated in ``training/leakage/__init__.py``): every module of ``training.leakage`` except
``audited_code`` imports nothing from the builder, labels, weights, splitters, indicator engine, Feast
store, trainer or panel helpers, at module level or inside a function; the definition table
(``training.indicators.definitions``), the artifact reader, configuration, errors and infra are allowed.
Only ``audit`` (the orchestrator) may import ``audited_code``, so no check can reach audited code through it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LEAKAGE = Path(__file__).resolve().parents[1] / "training" / "leakage"
FORBIDDEN = (
    "training.labeling",
    "training.validation",
    "training.indicators",
    "training.feast_store",
    "training.dataset",
    "training.model",
    "training.panels",
    "training.engines",
)
ALLOWED = ("training.indicators.definitions", "training.dataset.artifact")
RUNS_AUDITED_CODE = "audited_code"


def imported(path: Path) -> set[str]:
    """Every module name an ``import`` or ``from ... import`` in the file names (``from a import b`` counts
    both ``a`` and ``a.b``, so importing a forbidden submodule by attribute is caught too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def violations(names: set[str]) -> list[str]:
    def forbidden(name: str) -> bool:
        if any(name == a or name.startswith(f"{a}.") for a in ALLOWED):
            return False
        if name in ("training.indicators", "training.dataset"):  # the package: `from training.dataset import artifact`
            return False
        return any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN)

    return sorted(n for n in names if forbidden(n))


MODULES = sorted(p for p in LEAKAGE.glob("*.py") if p.stem != RUNS_AUDITED_CODE)


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.stem)
def test_no_audit_module_imports_the_code_it_audits(module: Path):
    assert violations(imported(module)) == [], f"{module.name} imports audited code"
    if module.stem != "audit":
        assert not any(n.endswith(RUNS_AUDITED_CODE) for n in imported(module)), (
            f"{module.name} reaches audited code through {RUNS_AUDITED_CODE}"
        )


def test_the_rule_catches_imports_at_module_level_inside_functions_and_by_attribute(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import numpy\n"
        "from training.dataset import artifact\n"
        "from training.indicators.definitions import INDICATORS\n"
        "def f():\n"
        "    from training.labeling.triple_barrier import triple_barrier_labels\n"
        "    import training.validation.purged_cv\n"
        "from training.indicators import compute\n"
        "from training.dataset import builder\n"
    )
    assert violations(imported(sample)) == [
        "training.dataset.builder",
        "training.indicators.compute",
        "training.labeling.triple_barrier",
        "training.labeling.triple_barrier.triple_barrier_labels",
        "training.validation.purged_cv",
    ]


def test_the_audit_package_runs_audited_code_in_one_module_only():
    reaching = sorted(p.stem for p in LEAKAGE.glob("*.py") if violations(imported(p)))
    assert reaching == [RUNS_AUDITED_CODE]
