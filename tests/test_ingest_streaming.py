"""Ingest streams its file: a file of many chunks stores exactly what one chunk would, and a refusal in any
chunk, the last included, names the line of the whole file and writes nothing."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.test_ingest_inputs import OHLCV, assert_refused, run, state
from training.ingestion import bar_files
from training.ingestion.load_rules import STORED_COLUMNS

CONTENT = f"SELECT {', '.join(STORED_COLUMNS)} FROM {OHLCV} ORDER BY symbol, event_timestamp"


@pytest.fixture
def loaded(empty_store, bundled_raw, write_csv):
    """As in test_ingest_inputs: the store holding 40 bundled bars; (connection, state before the test's ingest)."""
    assert run("ingest", str(write_csv(bundled_raw.head(40), "base.csv"))).exit_code == 0
    return empty_store, state(empty_store)


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Chunks of a few rows: ~30 CSV lines (about 60 bytes each) or 25 Parquet rows."""
    monkeypatch.setattr(bar_files, "CHUNK_BYTES", 2048)
    monkeypatch.setattr(bar_files, "CHUNK_ROWS", 25)


def chunk_sizes(path) -> list[int]:
    return [len(chunk) for chunk in bar_files.read_chunks(path)]


def write(frame: pd.DataFrame, path) -> None:
    if path.name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)  # pandas compresses .gz by the name


@pytest.fixture
def sample(bundled_raw) -> pd.DataFrame:
    """300 bars of all five symbols, as the file's text, in file order (not sorted by symbol)."""
    return bundled_raw.iloc[::40].head(300).reset_index(drop=True)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_many_chunks_store_what_one_chunk_does(suffix, empty_store, sample, tmp_path, monkeypatch):
    path = tmp_path / f"bars{suffix}"
    write(sample, path)
    assert chunk_sizes(path) == [len(sample)]
    result = run("ingest", str(path))
    assert result.exit_code == 0, result.output
    whole = empty_store.execute(CONTENT).fetchall()
    assert len(whole) == len(sample)

    empty_store.execute(f"TRUNCATE {OHLCV}")
    monkeypatch.setattr(bar_files, "CHUNK_BYTES", 2048)
    monkeypatch.setattr(bar_files, "CHUNK_ROWS", 25)
    sizes = chunk_sizes(path)
    assert len(sizes) >= 8 and sum(sizes) == len(sample)
    result = run("ingest", str(path))
    assert result.exit_code == 0, result.output
    assert f"{len(sample)} bars of 5 symbol(s): {len(sample)} inserted" in result.output
    assert empty_store.execute(CONTENT).fetchall() == whole

    again = run("ingest", str(path))  # a no-op re-ingest in chunks writes nothing
    assert f"0 inserted, 0 updated, {len(sample)} unchanged" in again.output


def _high_below_low(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[frame.index[-1], "High"] = "0.01"
    return frame


def _unparseable(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[frame.index[-1], "Date"] = "2000-02-31"
    return frame


def _other_format(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[frame.index[-1], "Date"] = pd.Timestamp(frame["Date"].iloc[-1]).strftime("%d/%m/%Y")
    return frame


def _twin_of_the_first(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.iloc[[0]]], ignore_index=True)


LAST_CHUNK = {
    "high below low": (_high_below_low, "high < low at line(s) {last}"),
    "unparseable date": (_unparseable, "unparseable date in column 'Date' at line(s) {last}, e.g. '2000-02-31'"),
    "another date format": (_other_format, "at line(s) {last}, e.g. '{date}': the other dates read as %Y-%m-%d"),
    "duplicate of a first-chunk row": (_twin_of_the_first, "duplicate (symbol, date) rows at line(s) 2, {last}, e.g."),
}


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
@pytest.mark.parametrize("case", sorted(LAST_CHUNK))
def test_a_bad_row_in_the_last_chunk_names_its_line_and_writes_nothing(
    case, suffix, loaded, bundled_raw, tmp_path, tiny_chunks
):
    conn, before = loaded
    corrupt, message = LAST_CHUNK[case]
    frame = corrupt(bundled_raw.iloc[40:240].reset_index(drop=True).copy())
    path = tmp_path / f"bad{suffix}"
    write(frame, path)
    sizes = chunk_sizes(path)
    last = len(frame) + 1  # the header is line 1
    assert len(sizes) >= 5  # the bad row, the file's last, is in the fifth chunk or later
    assert_refused(run("ingest", str(path)), message.format(last=last, date=frame["Date"].iloc[-1]))
    assert state(conn) == before


def test_a_duplicate_across_chunks_is_found_even_when_its_twin_is_dropped(loaded, bundled_raw, write_csv, tiny_chunks):
    conn, before = loaded
    frame = bundled_raw.iloc[40:240].reset_index(drop=True).copy()
    twin = frame.iloc[[3]].copy()
    twin["High"] = "0.01"  # implausible: --on-invalid drop would drop it, yet the file names a date twice
    path = write_csv(pd.concat([frame, twin], ignore_index=True))
    assert len(chunk_sizes(path)) >= 5
    result = run("ingest", str(path), "--on-invalid", "drop", "--invalid-report", str(path.with_name("r.csv")))
    assert_refused(result, "duplicate (symbol, date) rows at line(s) 5, 202")
    assert state(conn) == before
    assert not path.with_name("r.csv").exists() and not list(path.parent.glob(".r.csv*"))


def test_dropped_rows_of_every_chunk_are_reported_with_file_lines(
    loaded, bundled_raw, write_csv, tmp_path, tiny_chunks
):
    conn, before = loaded
    frame = bundled_raw.iloc[40:240].reset_index(drop=True).copy()
    for row in (1, 100, 199):  # lines 3, 102, 201: first, middle and last chunk
        frame.loc[row, "Open"] = str(float(frame.loc[row, "High"]) + 1)
    report = tmp_path / "dropped.csv"
    result = run("ingest", str(write_csv(frame)), "--on-invalid", "drop", "--invalid-report", str(report))
    assert result.exit_code == 0, result.output
    assert "197 inserted" in result.output and "3 implausible row(s) dropped" in result.output
    dropped = pd.read_csv(report, dtype=str, keep_default_na=False)
    assert dropped["line"].tolist() == ["3", "102", "201"]
    assert dropped["Open"].tolist() == frame.loc[[1, 100, 199], "Open"].tolist()
    assert state(conn)[0] == before[0] + 197


def test_a_file_whose_every_chunk_is_implausible_loads_nothing(loaded, bundled_raw, write_csv, tiny_chunks):
    conn, before = loaded
    frame = bundled_raw.iloc[40:140].copy()
    frame["Open"] = "100000"
    path = write_csv(frame)
    assert len(chunk_sizes(path)) >= 3
    assert_refused(run("ingest", str(path), "--on-invalid", "drop"), "every row is implausible", "open outside")
    assert state(conn) == before


def test_a_nul_byte_in_a_later_chunk_names_its_line(loaded, bundled_raw, tmp_path, tiny_chunks):
    conn, before = loaded
    path = tmp_path / "nul.csv"
    lines = bundled_raw.iloc[40:240].to_csv(index=False).splitlines()
    lines[150] = lines[150].replace("-", "\x00", 1)
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 4 * bar_files.CHUNK_BYTES  # line 151 is in the fifth chunk or later
    assert_refused(run("ingest", str(path)), "NUL byte at line 151")
    assert state(conn) == before


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("chunk_bytes", [7, 64, 2048, 1 << 20])
def test_blocks_cut_at_newlines_give_the_rows_of_the_whole_file(sample, tmp_path, monkeypatch, newline, chunk_bytes):
    """Blocks smaller than a line, a last line without its newline, CRLF: the rows (as text) of one read."""
    import pyarrow.csv as pa_csv

    path = tmp_path / "bars.csv"
    path.write_bytes(sample.to_csv(index=False, lineterminator=newline).rstrip("\r\n").encode())
    whole = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(
        sample.columns, "string"))).to_pandas()  # fmt: skip
    monkeypatch.setattr(bar_files, "CHUNK_BYTES", chunk_bytes)
    chunks = list(bar_files.read_chunks(path))
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)
    assert len(chunks) > 1 or chunk_bytes > path.stat().st_size


def test_the_reader_reads_a_block_when_asked_not_ahead(sample, tmp_path, monkeypatch):
    """pyarrow's streaming CSV reader reads ahead as fast as it decompresses (its memory grew with the file);
    ours has read at most two blocks when it hands over the first chunk, whatever the file's length."""
    import pyarrow as pa

    opened = pa.input_stream
    consumed = []

    class Counting:
        def __init__(self, stream):
            self.stream = stream

        def read(self, size):
            data = self.stream.read(size)
            consumed.append(len(data))
            return data

    monkeypatch.setattr(pa, "input_stream", lambda where: Counting(opened(where)))
    monkeypatch.setattr(bar_files, "CHUNK_BYTES", 4096)
    path = tmp_path / "bars.csv.gz"
    write(pd.concat([sample] * 60, ignore_index=True), path)  # about 1 MB of text
    chunks = bar_files.read_chunks(path)
    first = next(chunks)
    assert len(first) > 0 and 0 < sum(consumed) <= 2 * 4096
    assert sum(len(chunk) for chunk in chunks) + len(first) == 60 * len(sample)
