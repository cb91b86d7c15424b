"""Names that training and serving must agree on, defined once (and cheap to import)."""

from collections.abc import Iterable

CHAMPION_ALIAS = "champion"  # the registered model version `train` points at and `predict` serves
DEFAULT_FEATURE_SERVICE = "technical_model_v1"  # the model's inputs: scale-free forms only
AUDIT_FEATURE = "bar_timestamp"  # the joined feature row's own event timestamp, served with every row
DEFAULT_EXCHANGE_TZ = "America/New_York"  # where bars are stamped at their session close, and dates are read
# The commands an error tells the user to run.
INGEST = "python -m training ingest FILE"
COMPUTE_FEATURES = "python -m training compute-features"
FEAST_APPLY = "python -m training feast apply"
MATERIALIZE = "python -m training materialize"


def normalise_symbol(text: str) -> str:
    """A symbol as stored and served: stripped, upper case (tickers are case-insensitive)."""
    return text.strip().upper()


def normalise_symbols(items: Iterable[str]) -> list[str]:
    """Symbols a user asked for, normalised, blanks dropped, each once in the order first given."""
    return list(dict.fromkeys(normalise_symbol(s) for s in items if s.strip()))
