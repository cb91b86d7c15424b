"""The dataset artifact: a folder of Parquet part files plus ``metadata.json``, never pickle (a pickle runs code).

Each part holds the rows of one symbol partition (whole symbols), sorted by (event_timestamp, symbol); the
dataset's rows in order are the parts merged by event_timestamp (partitions are contiguous runs of the
sorted symbols, so within a date the parts come in symbol order). Readers take a part at a time and only
the columns they need; :attr:`Dataset.frame` (everything at once) is for small datasets and tests.

The fingerprint hashes every row (values, in any order and partitioning: a sum of two 64-bit row hashes)
and the configuration that produced them, so it changes when either changes and is equal when the same
inputs are rebuilt, whatever the partition size. Writing goes to a hidden staging folder next to the
target that is renamed into place, so a failed build leaves no partial artifact; the staging folder's name
carries the host and process id of its build, so a later build can tell a killed build's leftovers from a
build still running.

Every artifact (and every staging folder, from its first moment) holds :data:`MARKER_FILE`, naming this
project's artifact kind, its format and the dataset's fingerprint (null while the build runs). A folder is
replaced or deleted only when it proves to be an artifact: the marker parses and agrees with
``metadata.json``, and every other entry is one the artifact owns (a part file ``metadata.json`` lists that
starts as Parquet does, the leakage report of the same fingerprint, or a killed audit's staging file).
A dataset from before the marker proves itself by its rows: its metadata parses and its parts hash to its
fingerprint (one read of the dataset, once: the rebuild writes the marker). The marker is not hashed, so
the fingerprint is the same with or without it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.config import DATASET_SECTIONS, fingerprint_text
from training.errors import InputError
from training.output_paths import uncreatable

METADATA_FILE = "metadata.json"
MARKER_FILE = ".ohlcv-dataset.json"  # proves a folder is this project's artifact (see the module's docstring)
ARTIFACT_KIND = "ohlcv-training-dataset"
REPORT_FILE = "leakage_report.json"  # written beside the data by verify-leakage (training.leakage.report)
LEGACY_DATA_FILE = "dataset.parquet"  # format 1: every row in one file
PART_FILE = re.compile(r"part-\d{5}\.parquet")
STAGE_FILE = re.compile(r"\.stage-\d{5}\.parquet")  # a build's first-pass rows, only inside its staging folder
FORMAT_VERSION = 2

# Columns of every dataset besides the features; the order they are written in.
ID_COLUMNS = ("symbol", "event_timestamp", "t1", "feature_timestamp")
LABEL_COLUMNS = ("label", "target", "ret", "next_ret", "barrier", "weight", "split")
REQUIRED_METADATA = (
    "format_version", "fingerprint", "features", "feature_service", "config", "symbols", "split", "parts",
)  # fmt: skip
ARTIFACT_ENTRIES = frozenset({METADATA_FILE, MARKER_FILE, REPORT_FILE})
REPORT_STAGING = re.compile(rf"\.{re.escape(REPORT_FILE)}\.[a-z0-9_]{{8}}")  # a killed audit's (tempfile.mkstemp)
PARQUET_MAGIC = b"PAR1"
SHOWN_ENTRIES = 5
_SECOND_HASH_KEY = "ohlcv-dataset-v2"  # 16 bytes: a second, independent 64-bit hash of every row


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


class RowDigest:
    """An order-free digest of rows: their count and two wrapping sums of 64-bit row hashes.

    Sums commute, so the digest of a dataset is the same whichever partition size wrote it and in
    whichever order its parts are read. It detects changed, added and removed rows (2^-128-ish for
    accidental collisions); it is not meant to resist a crafted collision.
    """

    def __init__(self) -> None:
        self.rows = 0
        self.sums = [np.uint64(0), np.uint64(0)]
        self.columns: list[str] | None = None

    def add(self, frame: pd.DataFrame) -> None:
        columns = list(frame.columns)
        if self.columns is None:
            self.columns = columns
        elif columns != self.columns:
            raise ValueError(f"parts have different columns: {columns} vs {self.columns}")
        with np.errstate(over="ignore"):
            for i, key in enumerate((None, _SECOND_HASH_KEY)):
                kwargs = {"hash_key": key} if key else {}
                hashes = pd.util.hash_pandas_object(frame, index=False, **kwargs).to_numpy()
                self.sums[i] = np.uint64(self.sums[i] + hashes.sum(dtype=np.uint64))
        self.rows += len(frame)

    def hexdigest(self, config: dict[str, Any], features: list[str]) -> str:
        digest = hashlib.sha256()
        digest.update(fingerprint_text(config).encode())
        digest.update(json.dumps(features).encode())
        digest.update(json.dumps(self.columns or []).encode())
        digest.update(json.dumps([self.rows, *(int(s) for s in self.sums)]).encode())
        return digest.hexdigest()


def fingerprint(rows: pd.DataFrame | Dataset, config: dict[str, Any], features: list[str]) -> str:
    """sha256 of the rows (as a multiset: order and partitioning do not matter), the features and the config."""
    digest = RowDigest()
    for part in rows.parts() if isinstance(rows, Dataset) else (rows,):
        digest.add(part)
    return digest.hexdigest(config, features)


class Dataset:
    """Rows (one per decision) and the metadata that says how they were made.

    On disk (``path`` set) rows are read a part at a time; in memory (``frame`` given, e.g. a test's
    edited copy) the frame is the only part.
    """

    def __init__(self, metadata: dict[str, Any], path: Path | None = None, frame: pd.DataFrame | None = None):
        if (path is None) == (frame is None):
            raise ValueError("a Dataset is either on disk (path) or in memory (frame)")
        self.metadata, self.path = metadata, path
        self._frame = frame  # in memory, or every row once .frame has read them

    @property
    def features(self) -> list[str]:
        return list(self.metadata["features"])

    @property
    def n_rows(self) -> int:
        return len(self._frame) if self.path is None else int(self.metadata["rows"])

    def part_files(self) -> list[Path]:
        return [] if self.path is None else [self.path / p["file"] for p in self.metadata["parts"]]

    def parts(self, columns: Sequence[str] | None = None, categorical: Sequence[str] = ()) -> Iterator[pd.DataFrame]:
        """The rows a part at a time (whole symbols, sorted by (event_timestamp, symbol)), only ``columns``;
        the string columns named in ``categorical`` as pandas Categoricals (see :func:`_read_part`)."""
        if self.path is None:  # the frame's own columns, not a copy (frame[columns] copies each of them)
            yield self._frame if columns is None else pd.DataFrame({c: self._frame[c] for c in columns}, copy=False)
            return
        for file in self.part_files():
            yield _read_part(file, columns, categorical)

    def read(self, columns: Sequence[str] | None = None, categorical: Sequence[str] = ()) -> pd.DataFrame:
        """``columns`` of every row in the dataset's order (event_timestamp, then symbol), as one frame."""
        if self.path is None or (self._frame is not None and columns is None):
            return self._frame if columns is None else self._frame[list(columns)]
        wanted = None if columns is None else list(dict.fromkeys([*columns, "event_timestamp"]))
        frames = list(self.parts(wanted, categorical))
        if not frames:
            return pd.DataFrame(columns=wanted or [])
        if len(frames) == 1:
            frame = frames[0]
        else:  # merge the parts: a stable sort on time keeps symbol order
            times = np.concatenate([f["event_timestamp"].array.as_unit("ns").asi8 for f in frames])
            frame = stacked_in_order(frames, np.argsort(times, kind="stable"))
        del frames
        return frame if columns is None else frame[list(columns)]

    @property
    def frame(self) -> pd.DataFrame:
        """Every row and column at once: for small datasets and tests (cached; :meth:`parts` still reads the
        files)."""
        if self._frame is None:
            self._frame = self.read()
        return self._frame

    def rows(self, split: str) -> pd.DataFrame:
        frame = self.frame
        return frame[frame["split"] == split]


def _json_default(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.integer | np.floating | np.bool_):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in dataset metadata")


# -- where an artifact may be written ------------------------------------------------------------------------


def _named(entries: list[str]) -> str:
    shown = ", ".join(sorted(entries)[:SHOWN_ENTRIES])
    return shown + (f" and {len(entries) - SHOWN_ENTRIES} more" if len(entries) > SHOWN_ENTRIES else "")


def _marker_text(fingerprint: str | None) -> str:
    marker = {"artifact": ARTIFACT_KIND, "format_version": FORMAT_VERSION, "fingerprint": fingerprint}
    return json.dumps(marker) + "\n"


def _read_marker(folder: Path) -> dict[str, Any] | None:
    """The folder's marker when it parses as this project's (any fingerprint); None when absent or foreign."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    ours = isinstance(marker, dict) and marker.get("artifact") == ARTIFACT_KIND
    return marker if ours and marker.get("format_version") == FORMAT_VERSION else None


def _starts_as_parquet(file: Path) -> bool:
    try:
        with file.open("rb") as handle:
            return handle.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC
    except OSError:
        return False


def _report_of(file: Path, fingerprint: str) -> bool:
    """Whether ``file`` is verify-leakage's report on the rows of ``fingerprint``."""
    try:
        report = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (
        isinstance(report, dict)
        and isinstance(report.get("dataset"), dict)
        and (report["dataset"].get("fingerprint") == fingerprint)
    )


def _proven_metadata(out: Path) -> tuple[dict[str, Any] | None, str]:
    """(the metadata of the artifact in ``out``, "") when the folder proves to be one, else (None, why not)."""
    marker, metadata_file = _read_marker(out), out / METADATA_FILE
    if (out / MARKER_FILE).exists() and marker is None:
        return None, f"{MARKER_FILE} is not this project's dataset marker"
    if not metadata_file.exists():
        return None, f"{MARKER_FILE} without {METADATA_FILE}" if marker else ""
    try:
        metadata = _read_metadata(out)
    except InputError:
        return None, f"{METADATA_FILE} does not describe a dataset of format {FORMAT_VERSION}"
    if marker is not None:
        agree = marker.get("fingerprint") == metadata["fingerprint"]
        return (metadata, "") if agree else (None, f"{MARKER_FILE} and {METADATA_FILE} disagree on the fingerprint")
    try:  # a dataset from before the marker: its rows must hash to its fingerprint
        hashed = fingerprint(load(out), metadata["config"], metadata["features"])
    except InputError:
        return None, f"no {MARKER_FILE}, and its part files are not those {METADATA_FILE} lists"
    if hashed != metadata["fingerprint"]:
        return None, f"no {MARKER_FILE}, and its rows do not hash to the fingerprint in {METADATA_FILE}"
    (out / MARKER_FILE).write_text(_marker_text(hashed))  # proven once: later checks read the marker
    return metadata, ""


def _owned_entries(out: Path, metadata: dict[str, Any]) -> set[str]:
    """The entries of a proven artifact that belong to it: a file named like another's is still foreign."""
    owned = {METADATA_FILE, MARKER_FILE}
    owned |= {str(p["file"]) for p in metadata["parts"] if _starts_as_parquet(out / str(p["file"]))}
    if _report_of(out / REPORT_FILE, metadata["fingerprint"]):
        owned.add(REPORT_FILE)
    owned |= {e.name for e in out.iterdir() if REPORT_STAGING.fullmatch(e.name) and e.is_file()}
    return owned


def check_target(out: Path) -> None:
    """Refuse an ``out`` that a build cannot create, or would destroy: a file, or a folder holding anything an
    artifact there does not own (everything, when the folder does not prove to be an artifact).

    Checked before the build starts (it takes minutes at scale) and again just before the swap.
    """
    out = Path(out)
    if out.is_symlink():
        raise InputError(f"--out {out} is a symbolic link; give the folder it points to ({out.resolve()})")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is not a folder; give a new or empty folder, or an existing dataset")
    problem = uncreatable(out)
    if problem:
        raise InputError(f"--out {out} cannot be written: {problem}")
    entries = sorted(entry.name for entry in out.iterdir()) if out.exists() else []
    if not entries:
        return
    metadata, doubt = _proven_metadata(out)
    owned = _owned_entries(out, metadata) if metadata is not None else set()
    foreign = [name for name in entries if name not in owned]
    if foreign:
        why = f" ({doubt})" if doubt else ""
        raise InputError(
            f"--out {out} holds {_named(foreign)}, which is not part of a dataset artifact{why}; refusing to replace "
            "it (give a new or empty folder, or delete it yourself)"
        )


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.build-{socket.gethostname()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _staging_entry(entry: Path) -> bool:
    """A file a staging (or retired) folder may hold: an artifact's, a build's intermediate part, or a killed
    audit's report staging file."""
    name = entry.name
    return entry.is_file() and (
        name in ARTIFACT_ENTRIES
        or PART_FILE.fullmatch(name) is not None
        or STAGE_FILE.fullmatch(name) is not None
        or REPORT_STAGING.fullmatch(name) is not None
    )


def _abandoned(entry: Path, out: Path) -> bool:
    """A staging folder of ``out`` whose build is gone: named by a process of this host that is dead."""
    named = re.fullmatch(rf"\.{re.escape(out.name)}\.build-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]{{8}}", entry.name)
    return named is not None and named["host"] == socket.gethostname() and not _alive(int(named["pid"]))


def remove_abandoned_staging(out: Path) -> list[Path]:
    """Delete the hidden staging folders that killed builds of ``out`` left beside it; returns them.

    Only folders named like this module's staging folders, carrying its marker (written first, when the
    folder is made) and holding nothing but artifact files are touched, and never one whose build process is
    still alive.
    """
    out = Path(out)
    if not out.parent.is_dir():
        return []
    removed = []
    for entry in out.parent.glob(f".{glob.escape(out.name)}.build-*"):
        try:
            if entry.is_symlink() or not entry.is_dir() or _read_marker(entry) is None:
                continue
            if all(_staging_entry(file) for file in entry.iterdir()) and _abandoned(entry, out):
                shutil.rmtree(entry)
                removed.append(entry)
        except OSError:
            continue  # vanished meanwhile, or not ours to delete
    return removed


class ArtifactWriter:
    """Write an artifact part by part into a staging folder, then swap it into place in one rename.

    Use as a context manager: leaving it by an exception removes the staging folder, so a failed build
    leaves ``out`` as it was; :meth:`commit` writes ``metadata.json`` (with the parts and the fingerprint)
    and the marker, and swaps. A part is written as soon as its partition is done, so memory holds one
    partition.
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        check_target(self.out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned_staging(self.out)
        self.staging = self._new_staging()
        self.parts: list[dict[str, Any]] = []
        self.digest = RowDigest()

    def _new_staging(self) -> Path:
        """An empty folder of this build beside ``out``, marked as ours from the start (fingerprint not yet known)."""
        folder = Path(tempfile.mkdtemp(prefix=_staging_prefix(self.out), dir=self.out.parent))
        (folder / MARKER_FILE).write_text(_marker_text(None))
        return folder

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            shutil.rmtree(self.staging, ignore_errors=True)

    def stage_path(self, index: int) -> Path:
        """Where a build keeps a partition's intermediate rows between its passes (inside the staging folder)."""
        return self.staging / f".stage-{index:05d}.parquet"

    def write_part(self, frame: pd.DataFrame) -> None:
        """Append the rows of one partition (sorted by (event_timestamp, symbol)) as the next part file."""
        if frame.empty:
            return
        name = part_name(len(self.parts))
        frame.to_parquet(self.staging / name, index=False)
        self.digest.add(frame)
        self.parts.append({"file": name, "rows": len(frame), "symbols": [frame["symbol"].min(), frame["symbol"].max()]})

    def fingerprint(self, config: dict[str, Any], features: list[str]) -> str:
        return self.digest.hexdigest(config, features)

    def commit(self, metadata: dict[str, Any]) -> Path:
        """Write ``metadata`` (``parts`` is set here) and move the artifact to ``out`` atomically."""
        for leftover in self.staging.glob(".stage-*.parquet"):
            leftover.unlink()
        metadata = {**metadata, "parts": self.parts}
        (self.staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=_json_default) + "\n")
        (self.staging / MARKER_FILE).write_text(_marker_text(metadata["fingerprint"]))
        check_target(self.out)  # nothing else was put there while the rows were written
        if self.out.exists():  # set aside under a staging name: a build killed here leaves it to the next one
            retired = Path(tempfile.mkdtemp(prefix=_staging_prefix(self.out), dir=self.out.parent))
            os.replace(self.out, retired)
            os.replace(self.staging, self.out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(self.staging, self.out)
        return self.out


def save(dataset: Dataset, out: Path) -> Path:
    """Write an in-memory dataset (one part) atomically: a complete artifact appears at ``out`` or nothing changes."""
    with ArtifactWriter(out) as writer:
        for part in dataset.parts():
            writer.write_part(part)
        metadata = {**dataset.metadata, "fingerprint": writer.fingerprint(dataset.metadata["config"], dataset.features)}
        return writer.commit(metadata)


# -- reading -------------------------------------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].rstrip(".") if text else type(error).__name__


def _read_metadata(path: Path) -> dict[str, Any]:
    meta = path / METADATA_FILE
    try:
        metadata = json.loads(meta.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{meta} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                         "rebuild the dataset") from None  # fmt: skip
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{meta} cannot be read: {_first_line(exc)}") from None
    if not isinstance(metadata, dict):
        raise InputError(f"{meta} must hold a JSON object; rebuild the dataset")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{path}: dataset format {metadata.get('format_version')} (written by an earlier version) is not "
            f"{FORMAT_VERSION} (part files by symbol partition); rebuild it with `python -m training build-dataset`"
        )
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise InputError(f"{meta} lacks {', '.join(missing)}; rebuild the dataset")
    features, config = metadata["features"], metadata["config"]
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise InputError(f"{meta}: features must be a non-empty list of column names; rebuild the dataset")
    if not isinstance(config, dict) or any(section not in config for section in DATASET_SECTIONS):
        raise InputError(f"{meta}: config lacks one of {', '.join(DATASET_SECTIONS)}; rebuild the dataset")
    return metadata


def _read_part(file: Path, columns: Sequence[str] | None, categorical: Sequence[str] = ()) -> pd.DataFrame:
    """A part's ``columns``; those in ``categorical`` as Categoricals whose categories are sorted as Python sorts
    str, so their codes order rows as the strings would: a symbol or split column then costs one or two bytes
    a row instead of an eight-byte object pointer (at 25M rows, 150 MB a column)."""
    import pyarrow

    wanted = None if columns is None else list(columns)
    dictionary = [c for c in categorical if wanted is None or c in wanted]
    try:
        frame = pd.read_parquet(file, columns=wanted, **({"read_dictionary": dictionary} if dictionary else {}))
    except (pyarrow.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{file} cannot be read (truncated or corrupt?): {_first_line(exc)}; rebuild it") from None
    for name in dictionary:
        frame[name] = frame[name].cat.reorder_categories(sorted(frame[name].cat.categories))
    return frame


def load(path: Path) -> Dataset:
    """Open an artifact written by :class:`ArtifactWriter` (rows are read later, a part at a time); one line
    naming the problem when the folder is not one."""
    path = Path(path)
    if not (path / METADATA_FILE).exists():
        raise InputError(
            f"{path} is not a dataset (expected {METADATA_FILE} and part files); "
            "build one with `python -m training build-dataset --out DIR`"
        )
    metadata = _read_metadata(path)
    missing = [p["file"] for p in metadata["parts"] if not (path / str(p["file"])).is_file()]
    if missing or not metadata["parts"]:
        raise InputError(f"{path} lacks part file(s) {_named(missing) or '(none listed)'}; rebuild the dataset")
    for part in metadata["parts"]:
        _check_part(path / str(part["file"]), metadata)
    return Dataset(metadata=metadata, path=path)


def stacked_in_order(frames: list[pd.DataFrame], order: np.ndarray) -> pd.DataFrame:
    """The frames' rows stacked, then put in ``order``, a column at a time: concatenating, taking and
    re-indexing whole frames held three copies of every row at once (the peak of a 25M-row read).

    Consumes ``frames``: each column leaves them once stacked, so a column held in a block of its own (a
    datetime, a Categorical) is freed as the stacked one is made. Categoricals whose parts hold different
    categories (a column read as dictionaries: each part's symbols) become one with the union, sorted."""
    from pandas.api.types import union_categoricals

    columns = {}
    for name in list(frames[0].columns):
        pieces = [f[name] for f in frames]
        dtypes = {piece.dtype for piece in pieces}
        if len(dtypes) > 1 and all(isinstance(d, pd.CategoricalDtype) for d in dtypes):  # read as dictionaries
            joined = union_categoricals(pieces, sort_categories=True)
        else:  # a stored Categorical keeps its categories' order, as pd.concat keeps it
            joined = pieces[0].array if len(pieces) == 1 else pd.concat(pieces, ignore_index=True).array
        del pieces
        for frame in frames:
            del frame[name]
        columns[name] = joined.take(order)
        del joined
    return pd.DataFrame(columns, copy=False)


def _check_part(file: Path, metadata: dict[str, Any]) -> None:
    """A part's footer (cheap: no rows are read) is readable and has every promised column."""
    import pyarrow
    import pyarrow.parquet as pq

    try:
        columns = set(pq.read_schema(file).names)
    except (pyarrow.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{file} cannot be read (truncated or corrupt?): {_first_line(exc)}; rebuild it") from None
    missing = [c for c in (*ID_COLUMNS, *LABEL_COLUMNS, *metadata["features"]) if c not in columns]
    if missing:
        raise InputError(f"{file} lacks column(s) {_named(missing)} that {METADATA_FILE} promises; rebuild the dataset")
