"""Regenerate the README's generated sections (`make docs`): the feature list and the layout map.

Both come from the code (the indicator definition table; the packages' own docstrings), and
tests/test_docs.py fails when the README differs from what this renders, so neither can go stale.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from training.indicators.definitions import markdown_table
from training.infra.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
PACKAGE = PROJECT_ROOT / "training"

# The stage packages in the order data flows through them; a test checks it lists every package.
DATA_PATH = (
    "ingestion",
    "indicators",
    "feast_store",
    "dataset",
    "labeling",
    "validation",
    "leakage",
    "model",
    "serving",
    "engines",
    "commands",
    "infra",
)


def _section(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.DOTALL)


def summary(path: Path) -> str:
    """First sentence-line of a module's docstring (the line that says what it is for)."""
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    return docstring.split("\n", 1)[0].strip()


def packages() -> list[str]:
    return sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


def layout_table() -> str:
    """Markdown table: each stage package in data-path order with its docstring, then the top-level modules."""
    rows = ["| where | what it holds |", "|---|---|"]
    for name in DATA_PATH:
        folder = PACKAGE / name
        modules = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("__"))
        modules += sorted(f"{p.parent.name}/" for p in folder.glob("*/__init__.py"))
        purpose = summary(PACKAGE / name / "__init__.py")
        rows.append(f"| `training/{name}/` | {purpose} Modules: {', '.join(modules)}. |")
    for path in sorted(PACKAGE.glob("*.py")):
        if not path.stem.startswith("__"):
            rows.append(f"| `training/{path.name}` | {summary(path)} |")
    return "\n".join(rows)


def rendered(text: str) -> str:
    """``text`` with every generated section replaced by what the code says now."""
    text = _section("features").sub(lambda m: f"{m.group(1)}{markdown_table()}\n{m.group(2)}", text)
    return _section("layout").sub(lambda m: f"{m.group(1)}{layout_table()}\n{m.group(2)}", text)


if __name__ == "__main__":
    current = README.read_text()
    README.write_text(rendered(current))
    sys.stdout.write("README.md generated sections " + ("unchanged\n" if rendered(current) == current else "updated\n"))
