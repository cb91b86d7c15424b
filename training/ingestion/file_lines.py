"""How a refusal names the offending rows: file line numbers, a few of them, and how many more."""

from __future__ import annotations

import numpy as np

MAX_REPORTED_ROWS = 5


def line_numbers(mask: np.ndarray) -> str:
    """File line numbers (header is line 1) of the first offending rows, e.g. ``"4, 9 and 12 more"``."""
    lines = np.flatnonzero(mask)[:MAX_REPORTED_ROWS] + 2
    more = int(mask.sum()) - len(lines)
    return ", ".join(map(str, lines)) + (f" and {more} more" if more > 0 else "")
