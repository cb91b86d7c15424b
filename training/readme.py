"""Regenerate the README's feature list from the definition table (`make docs`)."""

from __future__ import annotations

import re
import sys

from training.indicators.definitions import markdown_table
from training.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
SECTION = re.compile(r"(<!-- features:start -->\n).*?(<!-- features:end -->)", re.DOTALL)


def rendered(text: str) -> str:
    """``text`` with the generated feature table between the markers."""
    return SECTION.sub(lambda m: f"{m.group(1)}{markdown_table()}\n{m.group(2)}", text)


if __name__ == "__main__":
    current = README.read_text()
    README.write_text(rendered(current))
    sys.stdout.write("README.md feature list " + ("unchanged\n" if rendered(current) == current else "updated\n"))
