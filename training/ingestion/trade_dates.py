"""Trading dates read under one format per file, and stamped at the session close in the exchange's zone.

A bar of trading date D is stamped at D's session close (16:00 in the exchange's time zone by default),
stored as tz-aware UTC: nothing about bar D is known before that instant.
"""

from __future__ import annotations

from datetime import time
from typing import TYPE_CHECKING

import numpy as np

from training.errors import InputError
from training.ingestion.file_lines import line_numbers as _rows

if TYPE_CHECKING:
    import pandas as pd

# Date formats tried on every file; exactly one must read all its dates (after an optional midnight time).
DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y%m%d",
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%m-%d-%Y",
    "%d-%m-%Y",
    "%d.%m.%Y",
    "%m/%d/%y",
    "%d/%m/%y",
    "%d-%b-%Y",
    "%d-%b-%y",
    "%d %b %Y",
    "%b %d %Y",
    "%b %d, %Y",
)
# A date, then optionally a time of day and a UTC offset (ISO 8601 style, or what pandas writes for datetimes).
_DATE_AND_TIME = (
    r"^(?P<date>.+?)(?:[ T](?P<time>\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(?:\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?))?)?$"
)
_TIME_DIRECTIVES = ("%H", "%I", "%M", "%S", "%f", "%p", "%z", "%Z", "%c", "%X")


def _parse_under(parts: pd.Series, date_format: str) -> pd.Series:
    import pandas as pd

    return pd.Series(pd.to_datetime(parts, format=date_format, errors="coerce"), index=parts.index)


def _check_format(date_format: str) -> None:
    """A user's --date-format must be a valid strptime format of a date alone."""
    import pandas as pd

    timed = [code for code in _TIME_DIRECTIVES if code in date_format]
    if timed:
        raise InputError(
            f"--date-format {date_format!r} has time directive(s) {', '.join(timed)}: give the date part only "
            "(a midnight time after the date is accepted)"
        )
    try:
        pd.to_datetime(pd.Series(["2000-01-01"]), format=date_format, errors="coerce")
    except ValueError as exc:
        raise InputError(f"--date-format {date_format!r} is not a valid strptime format: {exc}") from None


def _choose_format(parts: pd.Series, weights: np.ndarray, column: str) -> str:
    """The one candidate format that reads every date; refuses when none or several (that disagree) do."""
    parsed = {fmt: _parse_under(parts, fmt) for fmt in DATE_FORMATS}
    fits = [fmt for fmt, values in parsed.items() if values.notna().all()]
    if len(fits) == 1:
        return fits[0]
    if fits:
        first = parsed[fits[0]]
        rivals = [fmt for fmt in fits[1:] if not parsed[fmt].equals(first)]
        if not rivals:
            return fits[0]
        differs = np.flatnonzero((parsed[rivals[0]] != first).to_numpy())[0]
        example = parts.iloc[differs]
        raise InputError(
            f"ambiguous dates in column {column!r}: every date fits {', '.join([fits[0], *rivals])} "
            f"(e.g. {example!r} is {first.iloc[differs]:%Y-%m-%d} under {fits[0]} and "
            f"{parsed[rivals[0]].iloc[differs]:%Y-%m-%d} under {rivals[0]}); give --date-format"
        )
    read = {fmt: int(weights[values.notna().to_numpy()].sum()) for fmt, values in parsed.items()}
    best = max(DATE_FORMATS, key=lambda fmt: read[fmt])
    if read[best] == 0:
        raise InputError(
            f"unparseable date in column {column!r}: no known format reads any of them, e.g. {parts.iloc[0]!r}; "
            f"give --date-format (strptime codes, e.g. %d/%m/%Y)"
        )
    return best


class DateReader:
    """A file's trading dates, chunk by chunk, all under ONE format: ``date_format``, else the one its first chunk fits.

    Why one format: parsing each value on its own reads 01/03/2000 as January 3 and 13/03/2000 as March 13
    in the same file, silently scrambling it. A midnight time and any UTC offset after the date are
    accepted (the date as written is the trading date); another time of day is refused. The format is
    inferred from the first chunk only (memory holds one chunk); a later date it does not read refuses the
    file naming its line, as a stray format in the first chunk does.
    """

    def __init__(self, date_format: str | None = None) -> None:
        if date_format is not None:
            _check_format(date_format)
        self.given = self.chosen = date_format

    def __call__(self, text: pd.Series, column: str, first_row: int = 0) -> pd.Series:
        """Dates (midnight, naive) of one chunk whose first row is the file's row ``first_row``."""
        import pandas as pd

        codes, uniques = pd.factorize(text.astype(str).str.strip())
        split = pd.Series(uniques, dtype=object).str.extract(_DATE_AND_TIME)
        parts = split["date"].fillna(pd.Series(uniques, dtype=object))
        timed_unique = split["time"].notna() & ~split["time"].fillna("").str.fullmatch(r"[0:.]*")
        timed = timed_unique.to_numpy()[codes]
        if timed.any():
            raise InputError(
                f"column {column!r} must hold trading dates, but line(s) {_rows(timed, first_row)} carry a time of day"
            )
        if self.chosen is None:
            self.chosen = _choose_format(parts, np.bincount(codes, minlength=len(uniques)), column)
        parsed = _parse_under(parts, self.chosen)
        bad = parsed.isna().to_numpy()[codes]
        if bad.any():
            example = text.to_numpy()[np.flatnonzero(bad)[0]]
            reason = (
                f"it does not match --date-format {self.chosen}"
                if self.given
                else f"the other dates read as {self.chosen} and a file holds one date format "
                "(give --date-format otherwise)"
            )
            raise InputError(
                f"unparseable date in column {column!r} at line(s) {_rows(bad, first_row)}, "
                f"e.g. {str(example)!r}: {reason}"
            )
        return pd.Series(parsed.to_numpy()[codes], index=text.index).astype("datetime64[ns]")


def parse_dates(text: pd.Series, column: str, date_format: str | None = None) -> pd.Series:
    """Trading dates of a whole file's ``text``, under ONE format (see :class:`DateReader`)."""
    return DateReader(date_format)(text, column)


def session_close(dates: pd.Series, exchange_tz: str, close_time: time) -> pd.Series:
    """Trading dates -> the UTC instant of that day's session close in the exchange's time zone."""
    import pandas as pd

    local = pd.to_datetime(dates) + pd.Timedelta(hours=close_time.hour, minutes=close_time.minute)
    return local.dt.tz_localize(exchange_tz, nonexistent="raise", ambiguous="raise").dt.tz_convert("UTC")
