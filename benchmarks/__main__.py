"""``python -m benchmarks [--quick] [NAME ...]``: run the benchmarks and write a results table.

Every module ``benchmarks/bench_*.py`` exposes ``run(quick: bool) -> list[Result]``. Results go to
``benchmarks/results/results.md`` and ``results.json``; speed is reported as ratios to a reference
measured in the same run, never asserted in tests.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

RESULTS = Path(__file__).parent / "results"
# Run only when named (or by their own make target): the full scale run takes hours, not minutes.
NAMED_ONLY = ("bench_scale",)


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))


def _kept_rows(rerun: list[str], quick: bool) -> list[dict]:
    """Rows of earlier runs (same size class) for the benchmarks not run now, so a partial run adds to the table."""
    path = RESULTS / "results.json"
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())
    if earlier.get("meta", {}).get("quick") != quick:
        return []
    return [row for row in earlier.get("results", []) if row.get("module") not in rerun]


@click.command()
@click.option("--quick", is_flag=True, help="Small sizes: a smoke run of every benchmark in seconds.")
@click.argument("names", nargs=-1)
def main(quick: bool, names: tuple[str, ...]) -> None:
    """Run benchmarks (all but the scale run, or those whose module name contains one of NAMES)."""
    selected = [m for m in _modules() if any(n in m for n in names) or (not names and m not in NAMED_ONLY)]
    rows = []
    for name in selected:
        click.echo(f"== {name}", err=True)
        module = importlib.import_module(f"benchmarks.{name}")
        for result in module.run(quick=quick):
            rows.append({"module": name, **result.as_dict()})
            click.echo(
                f"   {result.benchmark} [{result.size}]: {result.subject} {result.subject_seconds:.3f}s vs "
                f"{result.reference} {result.reference_seconds:.3f}s -> ratio {result.ratio:.3f}",
                err=True,
            )
    RESULTS.mkdir(exist_ok=True)
    rows = _kept_rows(selected, quick) + rows
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": quick,
    }
    (RESULTS / "results.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    lines = [
        f"# Benchmark results ({meta['when']}, {'quick' if quick else 'full'} sizes)",
        "",
        "| benchmark | size | subject | s | reference | s | ratio | target | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['benchmark']} | {r['size']} | {r['subject']} | {r['subject_seconds']:.4g} | {r['reference']} | "
            f"{r['reference_seconds']:.4g} | {r['ratio']:.3f} | {r['target']} | {r['notes']} |"
        )
    (RESULTS / "results.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
