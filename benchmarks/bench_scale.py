"""Universe scale: every pipeline step as its own process on a synthetic universe, wall time and peak RSS each.

``python -m benchmarks.bench_scale [--quick | --size 2000x2500 ... | --symbols N --days M | --bars N]``
writes ``benchmarks/results/scale.md`` (and ``scale.json``). Each size runs in a scratch PostgreSQL database,
its own Feast project, state folder and MLflow SQLite backend, all removed afterwards: nothing of the user's
is touched. Time per bar is shown beside the same step's at the reference size (1.26M bars) measured in the
same run, so linearity is read off one table; peak RSS beside it shows whether memory grows with the universe.

Peak RSS is the child's ``ru_maxrss`` from ``wait4`` (what ``/usr/bin/time -v`` reports): it covers images the
step ``exec``s (``feast apply``) and children it waited for. Linux starts it at this launcher's RSS at spawn,
which is why this module imports no numpy or pandas: that floor (~16 MB) is stated in the table's heading.
A watchdog kills a step whose process tree passes ``--max-rss-gb`` (default: 80 % of available memory) so
the benchmark cannot push a shared machine into the OOM killer; that is reported as a failure, not hidden.

Inside each step, where its time goes: the step writes the seconds of its named stages (read, labels, join,
weights, write; each check and the rebuild; each fold's fit, scoring, the final fit, logging) to the file
``OHLCV_STAGE_TIMES`` names (:mod:`training.infra.stage_times`), and the table's second part lists them with
their share of the step's wall time; what no stage covers (start-up, imports) is the remainder.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click

from benchmarks.common import Result

RESULTS = Path(__file__).parent / "results"
REFERENCE = (500, 2520)  # 1.26M bars: the size of the SPEC's retrieval benchmark
DEFAULT_SIZES = ((2000, 2500), (5000, 5000))  # 5M and 25M bars: issue 12's targets
QUICK = (50, 300)
FORMATS = ("csv.gz", "parquet")  # benchmarks.universe's; not imported here, to keep numpy out of the launcher
# Pipeline order; {file}, {dataset} and {work} are filled per run.
STEPS: dict[str, tuple[str, ...]] = {
    "ingest": ("ingest", "{file}"),
    "compute-features": ("compute-features",),
    "feast apply": ("feast", "apply"),
    "build-dataset": ("build-dataset", "--out", "{dataset}"),
    "verify-leakage": ("verify-leakage", "--dataset", "{dataset}"),
    "train": ("train", "--dataset", "{dataset}", "--results", "{work}/train_results.json"),
    "materialize": ("materialize",),
    "check-online": ("check-online",),
}
DEFAULT_STEPS = tuple(name for name in STEPS if name != "check-online")
POLL_SECONDS = 0.2
# A hash of the host name: scratch databases of a dead run are dropped only by a run on the same host.
DB_PREFIX = f"ohlcv_bench_scale_{hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]}_"
STDERR_TAIL = 15
STAGE_TIMES_ENV = "OHLCV_STAGE_TIMES"  # training.infra.stage_times.ENV; not imported (no numpy in the launcher)


@dataclass
class StepRun:
    step: str
    command: str
    bars: int
    seconds: float
    peak_mb: float
    exit_code: int
    stderr_tail: list[str] = field(default_factory=list)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)  # path -> {"seconds", "calls"}

    @property
    def us_per_bar(self) -> float:
        return self.seconds / self.bars * 1e6


@dataclass
class SizeRun:
    symbols: int
    days: int
    universe: str
    generate_seconds: float
    generate_peak_mb: float
    steps: list[StepRun]

    @property
    def bars(self) -> int:
        return self.symbols * self.days

    @property
    def failed(self) -> StepRun | None:
        return next((s for s in self.steps if s.exit_code != 0), None)


def _session(sid: int) -> list[int]:
    """Processes of the step's session (it starts one): the step and every descendant that did not leave it."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()  # state ppid pgrp session ...
            except OSError:
                continue
            if int(fields[3]) == sid:
                found.append(int(entry))
    return found


def _rss_mb(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                total += next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0) / 1024
        except OSError:
            continue
    return total


def run_step(step: str, args: list[str], bars: int, env: dict[str, str], cwd: Path, max_rss_mb: float) -> StepRun:
    """Run ``python -m training ARGS`` as its own process; wall time, peak RSS (wait4) and the exit code."""
    log = cwd / f"{step.replace(' ', '_')}.stderr"
    stages = cwd / f"{step.replace(' ', '_')}.stages.json"
    stages.unlink(missing_ok=True)
    with log.open("w") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "training", *args], env={**env, STAGE_TIMES_ENV: str(stages)}, cwd=cwd,
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )  # fmt: skip
        killed = ""
        try:
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                rss = _rss_mb(_session(process.pid))
                if rss > max_rss_mb and not killed:
                    killed = f"killed by bench_scale: process tree RSS {rss:,.0f} MB > {max_rss_mb / 1024:.1f} GB"
                    os.killpg(process.pid, signal.SIGKILL)
                time.sleep(POLL_SECONDS)
        except BaseException:  # Ctrl-C or an error here: its own session would outlive us otherwise
            os.killpg(process.pid, signal.SIGKILL)
            raise
        seconds = time.perf_counter() - started
    process.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    tail = log.read_text(errors="replace").splitlines()[-STDERR_TAIL:] if code else []
    if killed:
        tail.append(killed)
    measured = json.loads(stages.read_text()) if stages.exists() else {}
    return StepRun(step, "python -m training " + " ".join(args), bars, seconds, usage.ru_maxrss / 1024, code, tail,
                   measured)  # fmt: skip


def _drop_abandoned(conninfo: str) -> None:
    """Scratch databases of this host's runs whose process died before dropping them (a pid says nothing elsewhere)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(conninfo, autocommit=True) as admin:
        rows = admin.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (DB_PREFIX,)).fetchall()
        for (name,) in rows:
            pid = name.removeprefix(DB_PREFIX).split("_")[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def scratch_environment(work: Path, teardown_feast: bool, keep: bool = False) -> Iterator[dict[str, str]]:
    """A fresh database on the configured PostgreSQL, its own Feast project and state; all dropped afterwards.

    With ``keep`` they stay, named in ``work/env.json``, and a later run in the same folder reuses them: so one
    step can be measured again at 25M bars after a change without repeating the hour of steps before it.
    """
    import psycopg
    from psycopg import sql

    from training.infra import settings

    pg = settings.check_postgres()
    _drop_abandoned(pg.conninfo())
    saved = work / "env.json"
    if saved.exists():
        scratch = json.loads(saved.read_text())
    else:
        # A kept database's name has no pid, so _drop_abandoned leaves it for the run that reuses it.
        name = f"{DB_PREFIX}{'kept' if keep else os.getpid()}_{uuid.uuid4().hex[:6]}"
        state = work / "state"
        state.mkdir()
        with psycopg.connect(pg.conninfo(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        scratch = {
            "PGDATABASE": name,
            "FEAST_PROJECT": name,
            "OHLCV_STATE_DIR": str(state),
            "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        }
        if pg.embedded:  # the children must find the same embedded server
            scratch["OHLCV_PGDATA"] = str(settings.embedded_pgdata())
        if keep:
            saved.write_text(json.dumps(scratch, indent=2))
    try:
        yield {**os.environ, **scratch}
    finally:
        if not keep:
            if teardown_feast:  # removes the project's online rows (Redis keys) and registry; best effort
                subprocess.run([sys.executable, "-m", "training", "feast", "teardown"], env={**os.environ, **scratch},
                               cwd=work, capture_output=True, timeout=300, check=False)  # fmt: skip
            with psycopg.connect(pg.conninfo(), autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch["PGDATABASE"]))
                )
            saved.unlink(missing_ok=True)


def generate(path: Path, symbols: int, days: int, seed: int, fmt: str) -> dict:
    """Write the universe from a child process (see benchmarks.universe.main); what it wrote, as a dict."""
    command = [sys.executable, "-m", "benchmarks.universe", str(path), str(symbols), str(days), str(seed), fmt]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=Path(__file__).parents[1])
    if done.returncode:
        raise click.ClickException(f"generating the universe failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def launcher_floor_mb() -> float:
    """What any child of this process reports as peak RSS at least: Linux starts ru_maxrss at the parent's."""
    process = subprocess.Popen(["/bin/true"])
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0
    return usage.ru_maxrss / 1024


@contextmanager
def size_folder(symbols: int, days: int, keep: Path | None) -> Iterator[Path]:
    """A temporary folder, or ``keep/SYMBOLSxDAYS`` (kept; reused when it holds an earlier kept run)."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="bench_scale_") as folder:
            yield Path(folder)
        return
    folder = keep / f"{symbols}x{days}"
    folder.mkdir(parents=True, exist_ok=True)
    yield folder


def run_size(
    symbols: int,
    days: int,
    steps: tuple[str, ...],
    max_rss_mb: float,
    fmt: str = "csv.gz",
    seed: int = 12,
    keep: Path | None = None,
) -> SizeRun:
    """Generate the universe, then run the steps in order in a scratch environment; stop at the first failure.

    With ``keep``, a folder that already holds this size's kept run is reused: no new universe, same database.
    """
    bars = symbols * days
    with size_folder(symbols, days, keep) as work:
        described = work / "universe.json"
        if keep is not None and described.exists():
            universe = json.loads(described.read_text())
            click.echo(f"== {bars:,} bars: reusing {work}", err=True)
        else:
            universe = generate(work / f"universe.{fmt}", symbols, days, seed, fmt)
            described.write_text(json.dumps(universe))
            click.echo(f"== {bars:,} bars: {universe['describe']}, generated in {universe['seconds']:.1f} s "
                       f"(generator peak {universe['peak_mb']:.0f} MB)", err=True)  # fmt: skip
        values = {"file": str(work / f"universe.{fmt}"), "dataset": str(work / "dataset"), "work": str(work)}
        runs: list[StepRun] = []
        with scratch_environment(work, teardown_feast="feast apply" in steps, keep=keep is not None) as env:
            for step in steps:
                args = [part.format(**values) for part in STEPS[step]]
                run = run_step(step, args, bars, env, work, max_rss_mb)
                runs.append(run)
                click.echo(
                    f"   {step}: {run.seconds:.1f} s, peak {run.peak_mb:,.0f} MB, {run.us_per_bar:.2f} us/bar, "
                    f"exit {run.exit_code}",
                    err=True,
                )
                if run.exit_code:
                    click.echo("\n".join(f"   | {line}" for line in run.stderr_tail), err=True)
                    break
        return SizeRun(symbols, days, universe["describe"], universe["seconds"], universe["peak_mb"], runs)


def _size(text: str) -> tuple[int, int]:
    symbols, _, days = text.lower().partition("x")
    if not (symbols.isdigit() and days.isdigit() and int(symbols) > 0 and int(days) > 0):
        raise click.BadParameter(f"sizes look like 2000x2500 (symbols x business days), got {text!r}")
    return int(symbols), int(days)


def _mb(value: float) -> str:
    return f"{value / 1024:.2f} GB" if value >= 1024 else f"{value:.0f} MB"


def table(runs: list[SizeRun], reference: SizeRun | None, meta: dict) -> str:
    """The markdown table: one row per size and step, time per bar and peak beside the reference's."""
    ref = {s.step: s for s in reference.steps} if reference else {}
    lines = [
        f"# Universe scale ({meta['when']}, {meta['cpus']} CPUs, {meta['memory_gb']:.0f} GB)",
        "",
        "Every step is `python -m training ...` in its own process on a synthetic universe (seeded geometric random",
        "walks, the bundled file's columns) in a scratch database. Peak RSS is the step's `ru_maxrss` (wait4, as",
        f"`/usr/bin/time -v`), which includes the launcher's {meta['launcher_mb']:.0f} MB carried over at spawn.",
        "Each step's start-up (imports; Feast's alone is several seconds) is in its wall time: it dominates µs/bar",
        f"at small sizes. A step whose process tree passes {_mb(meta['max_rss_mb'])} RSS is killed (a failure).",
        "",
        f"Command: `{meta['command']}`",
        "",
        "| size | bars | step | wall s | µs/bar | µs/bar ÷ reference | peak RSS | peak ÷ reference | exit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in ([reference] if reference else []) + runs:
        label = f"{run.symbols:,} × {run.days:,}" + (" (reference)" if run is reference else "")
        for step in run.steps:
            base = ref.get(step.step) if run is not reference else None
            ratio = f"{step.us_per_bar / base.us_per_bar:.2f}" if base and base.exit_code == 0 else "—"
            peak_ratio = f"{step.peak_mb / base.peak_mb:.2f}" if base and base.exit_code == 0 else "—"
            lines.append(
                f"| {label} | {run.bars:,} | {step.step} | {step.seconds:.1f} | {step.us_per_bar:.2f} | {ratio} | "
                f"{_mb(step.peak_mb)} | {peak_ratio} | {step.exit_code} |"
            )
    lines += stage_table(([reference] if reference else []) + runs)
    lines += ["", "Universe files (gzipped CSV unless named .parquet; written in blocks of whole symbols):"]
    lines += [f"- {r.universe}, generated in {r.generate_seconds:.1f} s, generator peak {_mb(r.generate_peak_mb)}"
              for r in ([reference] if reference else []) + runs]  # fmt: skip
    for run in ([reference] if reference else []) + runs:
        if failed := run.failed:
            title = f"**{failed.step} failed at {run.bars:,} bars** (exit {failed.exit_code}): `{failed.command}`"
            lines += ["", title, "", "```", *failed.stderr_tail, "```"]
    return "\n".join(lines) + "\n"


def stage_table(runs: list[SizeRun]) -> list[str]:
    """Where each step's wall time went: its stages (a stage inside another is ``outer/inner``, its seconds part
    of the outer's), the seconds and share of the step's wall time, and what no top-level stage covers."""
    rows = []
    for run in runs:
        for step in run.steps:
            if not step.stages:
                continue
            label = f"{run.symbols:,} × {run.days:,}"
            for path, measured in step.stages.items():
                depth = path.count("/")
                calls = f" ×{measured['calls']:.0f}" if measured["calls"] > 1 else ""
                rows.append(f"| {label} | {step.step} | {'· ' * depth}{path}{calls} | {measured['seconds']:.2f} | "
                            f"{measured['seconds'] / step.seconds:.1%} |")  # fmt: skip
            top = sum(m["seconds"] for path, m in step.stages.items() if "/" not in path)
            rows.append(f"| {label} | {step.step} | start-up and unmeasured | {step.seconds - top:.2f} | "
                        f"{(step.seconds - top) / step.seconds:.1%} |")  # fmt: skip
    if not rows:
        return []
    return [
        "",
        "Where each step's time goes (stages in the order they finished; `a/b` is part of `a`; ×N: N calls):",
        "",
        "| size | step | stage | seconds | share of the step's wall time |",
        "|---|---|---|---|---|",
        *rows,
    ]


def measure(
    sizes: list[tuple[int, int]],
    reference: tuple[int, int] | None,
    steps: tuple[str, ...],
    results: Path,
    max_rss_gb: float | None = None,
    fmt: str = "csv.gz",
    keep: Path | None = None,
) -> tuple[list[SizeRun], SizeRun | None]:
    """Run the reference size and every size, write scale.md and scale.json to ``results``."""
    available_mb = _meminfo_mb("MemAvailable")
    max_rss_mb = max_rss_gb * 1024 if max_rss_gb else 0.8 * available_mb
    launcher_mb = launcher_floor_mb()
    ref_run = run_size(*reference, steps, max_rss_mb, fmt, keep=keep) if reference else None
    runs: list[SizeRun] = []
    for symbols, days in sizes if not (ref_run and ref_run.failed) else []:  # a failure stops the whole run
        runs.append(run_size(symbols, days, steps, max_rss_mb, fmt, keep=keep))
        if runs[-1].failed:
            break
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "memory_gb": _meminfo_mb("MemTotal") / 1024,
        "launcher_mb": launcher_mb,
        "max_rss_mb": max_rss_mb,
        "command": " ".join(["python -m", _main_module(), *sys.argv[1:]]),
    }
    results.mkdir(parents=True, exist_ok=True)
    (results / "scale.md").write_text(table(runs, ref_run, meta))
    payload = {"meta": meta, "reference": asdict(ref_run) if ref_run else None, "runs": [asdict(r) for r in runs]}
    (results / "scale.json").write_text(json.dumps(payload, indent=2))
    return runs, ref_run


def _main_module() -> str:
    """``benchmarks.bench_scale`` or ``benchmarks`` (the runner): how this run was started, for the table."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return spec.name.removesuffix(".__main__") if spec else "benchmarks.bench_scale"


def _meminfo_mb(key: str) -> float:
    with open("/proc/meminfo") as meminfo:
        return next(int(line.split()[1]) for line in meminfo if line.startswith(f"{key}:")) / 1024


def run(quick: bool) -> list[Result]:
    """For ``python -m benchmarks``: each step's time at a size beside its time per bar at the reference size."""
    sizes, reference = ([QUICK], None) if quick else (list(DEFAULT_SIZES), REFERENCE)
    runs, ref_run = measure(sizes, reference, DEFAULT_STEPS, RESULTS)
    ref = {s.step: s for s in ref_run.steps} if ref_run else {}
    rows = []
    for size in runs:
        for step in size.steps:
            base = ref.get(step.step)
            rows.append(Result(
                benchmark=f"scale: {step.step}" + ("" if step.exit_code == 0 else f" (exit {step.exit_code})"),
                size=f"{size.symbols:,} × {size.days:,} bars",
                subject="python -m training " + step.step,
                subject_seconds=step.seconds,
                reference=f"same step at {ref_run.bars:,} bars, scaled per bar" if base else "—",
                reference_seconds=base.us_per_bar * size.bars / 1e6 if base else 0.0,
                target="ratio ≤ 1.3 (linear); peak ≤ 2.5 GB (train ≤ 4 GB)",
                notes=f"peak RSS {_mb(step.peak_mb)}" + (f" (reference {_mb(base.peak_mb)})" if base else ""),
            ))  # fmt: skip
    return rows


@click.command()
@click.option("--quick", is_flag=True, help=f"Smoke run: {QUICK[0]} symbols x {QUICK[1]} days, no reference size.")
@click.option("--size", "sizes", multiple=True, help="SYMBOLSxDAYS, repeatable (default: 2000x2500 5000x5000).")
@click.option("--symbols", type=click.IntRange(min=1), help="One size: this many symbols (with --days).")
@click.option("--days", type=click.IntRange(min=1), help="One size: this many business days per symbol.")
@click.option("--bars", type=click.IntRange(min=1), help="One size of about N bars: N / 2,500 symbols x 2,500 days.")
@click.option("--reference", default=f"{REFERENCE[0]}x{REFERENCE[1]}", show_default=True,
              help="Size whose time per bar every other size is compared with; 'none' to skip.")  # fmt: skip
@click.option("--steps", default=",".join(DEFAULT_STEPS), show_default=True,
              help=f"Comma-separated steps, in pipeline order, from: {', '.join(STEPS)}.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv.gz", show_default=True,
              help="The universe file's format (what ingest reads).")  # fmt: skip
@click.option("--max-rss-gb", type=float, help="Kill a step whose process tree passes this (default: 80% of free).")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS, show_default=True,
              help="Folder for scale.md and scale.json.")  # fmt: skip
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path),
              help="Keep each size's universe, database and artifacts in KEEP/SYMBOLSxDAYS; a later run with the "
                   "same --keep reuses them (e.g. --steps train after a change). Drop them with "
                   "`dropdb NAME` (named in env.json) and rm -r.")  # fmt: skip
def main(quick, sizes, symbols, days, bars, reference, steps, fmt, max_rss_gb, results, keep) -> None:
    """Run every pipeline step as its own process on synthetic universes; exit 1 when a step fails."""
    chosen = [_size(s) for s in sizes]
    if symbols or days:
        if not (symbols and days):
            raise click.BadParameter("--symbols and --days go together")
        chosen.append((symbols, days))
    if bars:
        chosen.append((max(1, round(bars / 2500)), 2500))
    ref = None if quick or reference.lower() == "none" else _size(reference)
    if quick:
        chosen = chosen or [QUICK]
    chosen = chosen or list(DEFAULT_SIZES)
    names = tuple(s.strip() for s in steps.split(",") if s.strip())
    if unknown := [s for s in names if s not in STEPS]:
        raise click.BadParameter(f"unknown steps {unknown}; known: {', '.join(STEPS)}")
    runs, ref_run = measure(chosen, ref, names, results, max_rss_gb, fmt, keep)
    click.echo((results / "scale.md").read_text())
    if any(r.failed for r in runs + ([ref_run] if ref_run else [])):
        sys.exit(1)


if __name__ == "__main__":
    main()
