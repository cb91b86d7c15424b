"""The audit shares no code with what it audits: its modules' imports, parsed, name none of the audited code.

The rule (stated in ``training/leakage/__init__.py``): every module of ``training.leakage`` except
``audited_code`` imports nothing from the builder, its bar readers, labels, weights, splitters, indicator
engine, engines, Feast store, trainer or panel helpers, at module level or inside a function; the definition
table (``training.indicators.definitions``), the artifact reader, configuration, errors and infra are allowed.
Only ``audit`` (the orchestrator) and the ``verify-leakage`` command may import ``audited_code``, so no check
can reach audited code through it. And not only the files: every project module the audit loads at run time
(the command, the checks, and whatever they import, followed transitively, package ``__init__`` files
included) is outside the audited code, ``audited_code`` alone excepted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEAKAGE = ROOT / "training" / "leakage"
COMMAND = "training.commands.verify_leakage"
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
MAY_IMPORT_AUDITED_CODE = ("audit", "verify_leakage")


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


MODULES = [*sorted(p for p in LEAKAGE.glob("*.py") if p.stem != RUNS_AUDITED_CODE),
           ROOT / "training" / "commands" / "verify_leakage.py"]  # fmt: skip


def source_of(module: str) -> Path | None:
    """The file of a project module (a package's ``__init__.py``), None for anything else."""
    path = ROOT.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def loaded_at_run_time(start: list[str], excluded: str) -> set[str]:
    """Every project module ``start`` reaches through imports (in functions too), its packages included,
    without following ``excluded``."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        module = todo.pop()
        if module in seen or module == excluded or source_of(module) is None:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b first
        todo += [name for name in imported(source_of(module)) if name.startswith("training")]
    return seen


def test_nothing_the_audit_loads_at_run_time_is_audited_code():
    start = [COMMAND, *(f"training.leakage.{p.stem}" for p in LEAKAGE.glob("*.py"))]
    loaded = loaded_at_run_time(start, f"training.leakage.{RUNS_AUDITED_CODE}")
    assert {COMMAND, "training.leakage.bars", "training.config", "training.dataset"} <= loaded
    assert violations(loaded) == []


def test_the_run_time_closure_finds_audited_code_behind_an_allowed_module(tmp_path, monkeypatch):
    """A package ``__init__`` or a helper that imports the builder is caught, however deep."""
    package = tmp_path / "training" / "leakage"
    package.mkdir(parents=True)
    (tmp_path / "training" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "check.py").write_text("def f():\n    from training.helpers import g\n")
    (tmp_path / "training" / "helpers.py").write_text("from training.dataset.offline_bars import read_bars\n")
    (tmp_path / "training" / "dataset").mkdir()
    (tmp_path / "training" / "dataset" / "__init__.py").write_text("")
    (tmp_path / "training" / "dataset" / "offline_bars.py").write_text("")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    loaded = loaded_at_run_time(["training.leakage.check"], "training.leakage.audited_code")
    assert violations(loaded) == ["training.dataset.offline_bars"]


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.stem)
def test_no_audit_module_imports_the_code_it_audits(module: Path):
    assert violations(imported(module)) == [], f"{module.name} imports audited code"
    if module.stem not in MAY_IMPORT_AUDITED_CODE:
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
    reaching = sorted(p.stem for p in [*MODULES, LEAKAGE / f"{RUNS_AUDITED_CODE}.py"] if violations(imported(p)))
    assert reaching == [RUNS_AUDITED_CODE]
