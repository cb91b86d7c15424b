"""Shared pieces of the benchmarks: timing, peak memory and the result row every benchmark returns."""

from __future__ import annotations

import gc
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Result:
    """One line of the results table: the project's time beside the reference's, as a ratio."""

    benchmark: str
    size: str
    subject: str
    subject_seconds: float
    reference: str
    reference_seconds: float
    target: str = ""
    notes: str = ""

    @property
    def ratio(self) -> float:
        """subject / reference: < 1 means the project is faster than the reference."""
        return self.subject_seconds / self.reference_seconds if self.reference_seconds else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def best_of(function: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Minimum wall time over ``repeat`` runs (the least noisy estimate on a shared machine) and a result."""
    best, value = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - start)
    return best, value


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB: VmHWM, the high-water mark of its own address space.

    ``getrusage().ru_maxrss`` is not used: Linux carries it over from the parent through fork and exec,
    so a small benchmark process started by a big one would report the big one's peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scratch_database(name: str, create: bool) -> None:
    """Drop the benchmark's own database (closing its connections), and create it empty again when ``create``."""
    from dataclasses import replace

    import psycopg
    from psycopg import sql

    from training.infra import settings

    server = settings.check_postgres(replace(settings.postgres(), dbname="postgres"))  # one line when it is down
    with psycopg.connect(server.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if create:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
