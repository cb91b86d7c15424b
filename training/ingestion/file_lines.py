"""How a refusal names the offending rows: file line numbers, a few of them, and how many more."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_REPORTED_ROWS = 5


def line_numbers(mask: np.ndarray, first_row: int = 0) -> str:
    """File line numbers (header is line 1) of the first offending rows, e.g. ``"4, 9 and 12 more"``.

    ``mask`` covers one chunk of the file whose first row is the file's row ``first_row`` (counted from 0):
    a refusal names lines of the file, not of the chunk.
    """
    return name_lines(np.flatnonzero(mask)[:MAX_REPORTED_ROWS] + first_row + 2, int(mask.sum()))


def name_lines(lines: Sequence[int], total: int) -> str:
    """The first few of ``total`` offending line numbers, then how many more."""
    more = total - len(lines)
    return ", ".join(map(str, lines)) + (f" and {more} more" if more > 0 else "")
