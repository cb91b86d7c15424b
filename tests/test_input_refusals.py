"""A user's mistake that needs no service to find: one line, the documented exit code, nothing written.

Unit tier: every case is refused before PostgreSQL, Redis or MLflow is reached (run with their ports closed).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli
from training.errors import InputError
from training.ingestion.bar_files import ColumnMap, clean_bars, clean_chunks, read_chunks, resolve_columns


def one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- settings --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "code", "message"),
    [
        ("bogus://x", 2, "MLFLOW_TRACKING_URI=bogus://x: MLflow has no tracking store for bogus://"),
        ("sqlite:////proc/nope/mlflow.db", 3, "MLflow's SQLite backend /proc/nope/mlflow.db cannot be written: "
         "nothing can be created in /proc"),
        ("sqlite:///{file}/mlflow.db", 3, "a-file is a file, not a folder (check MLFLOW_TRACKING_URI)"),
    ],
)  # fmt: skip
def test_an_unusable_mlflow_uri_stops_train_before_it_reads_the_dataset(monkeypatch, tmp_path, uri, code, message):
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri.format(file=tmp_path / "a-file"))
    results = tmp_path / "results.json"
    line = one_line_error(run_cli("train", "--dataset", str(tmp_path / "ds"), "--results", str(results)), code)
    assert message in line
    assert files_under(tmp_path) == ["a-file"]


@pytest.mark.parametrize("where", ["{file}/r.json", "{folder}"])
def test_train_results_that_cannot_be_written_are_refused_before_training(monkeypatch, tmp_path, where):
    """Found before the dataset is even read: after a full train the run would be registered and its results lost."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-folder").mkdir()
    results = where.format(file=tmp_path / "a-file", folder=tmp_path / "a-folder")
    line = one_line_error(run_cli("train", "--dataset", str(tmp_path / "no-dataset"), "--results", results), 2)
    why = "a-file is a file, not a folder" if "{file}" in where else "a-folder is a folder"
    assert f"error: --results {results} cannot be written: " in line and why in line
    assert files_under(tmp_path) == ["a-file", "a-folder"]


# -- bar files -------------------------------------------------------------------------------------------------

BARS = {"Date": ["2024-01-02", "2024-01-03", "2024-01-04"], "Open": ["10", "11", "12"], "High": ["11", "12", "13"],
        "Low": ["9", "10", "11"], "Close": ["10.5", "11.5", "12.5"], "Volume": ["1000", "2000", "3000"]}  # fmt: skip


def test_a_column_twice_in_the_header_is_one_line(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text("Date,Symbol,Open,High,Low,Close,Close,Volume\n2024-01-02,AAPL,10,11,9,10.5,10.5,1000\n")
    with pytest.raises(InputError, match=r"^column 'Close' appears 2 times in the header; rename all but one$"):
        list(clean_chunks(read_chunks(path)))


def test_two_columns_that_could_each_be_the_symbol_are_refused_naming_both():
    found = ["Date", "Ticker", "Symbol", "Open", "High", "Low", "Close", "Volume"]
    with pytest.raises(InputError, match=r"columns 'Ticker' and 'Symbol' could each be the symbol; say which with "
                                         r"--symbol-column"):  # fmt: skip
        resolve_columns(found, ColumnMap(), None)
    assert resolve_columns(found, ColumnMap(symbol="Ticker"), None)["symbol"] == "Ticker"  # the user said which
    with pytest.raises(InputError, match=r"columns 'Close' and 'close' could each be the close"):
        resolve_columns([*found, "close"], ColumnMap(symbol="Ticker"), None)


def test_an_ibm_bar_is_never_stored_as_msft():
    raw = pd.DataFrame({**BARS, "Ticker": "IBM", "Symbol": "MSFT"})
    with pytest.raises(InputError, match="'Ticker' and 'Symbol'"):
        clean_bars(raw)
    assert set(clean_bars(raw, mapping=ColumnMap(symbol="Ticker")).bars["symbol"]) == {"IBM"}


def test_prices_and_volumes_beyond_their_bounds_are_implausible():
    raw = pd.DataFrame({**BARS, "Symbol": "AAPL"})
    raw.loc[1, ["Open", "High", "Low", "Close"]] = "1e308"  # line 3
    raw.loc[2, "Volume"] = "1e16"  # line 4
    with pytest.raises(InputError) as raised:
        clean_bars(raw)
    message = str(raised.value)
    assert "price above 1,000,000,000 in column 'Close' at line(s) 3" in message
    assert "volume above 1,000,000,000,000,000 in column 'Volume' at line(s) 4" in message
    dropped = clean_bars(raw, on_invalid="drop").dropped  # the same policy as every implausible bar
    assert dropped["line"].tolist() == [3, 4]


def test_the_bounds_themselves_are_plausible():
    raw = pd.DataFrame({**BARS, "Symbol": "BRK.A"})
    raw.loc[0, ["Open", "High", "Low", "Close"]] = "1e9"
    raw.loc[0, "Volume"] = "1e15"
    assert not clean_bars(raw).bars["dropped"].any()
