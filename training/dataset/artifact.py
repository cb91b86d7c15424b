"""The dataset artifact: ``dataset.parquet`` plus ``metadata.json``, never pickle (loading a pickle runs code).

The fingerprint hashes the rows and the configuration that produced them, so it changes when either
changes and is equal when the same inputs are rebuilt. Writing goes to a hidden staging folder next to the
target that is renamed into place, so a failed build leaves no partial artifact; the staging folder's name
carries the host and process id of its build, so a later build can tell a killed build's leftovers from a
build still running. A folder that holds anything but an artifact is never replaced.
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.config import DATASET_SECTIONS, fingerprint_text
from training.errors import InputError

DATA_FILE = "dataset.parquet"
METADATA_FILE = "metadata.json"
REPORT_FILE = "leakage_report.json"  # written beside the data by verify-leakage (training.leakage.report)
FORMAT_VERSION = 1

# Columns of every dataset besides the features; the order they are written in.
ID_COLUMNS = ("symbol", "event_timestamp", "t1", "feature_timestamp")
LABEL_COLUMNS = ("label", "target", "ret", "next_ret", "barrier", "weight", "split")
REQUIRED_METADATA = ("format_version", "fingerprint", "features", "feature_service", "config", "symbols", "split")
ARTIFACT_ENTRIES = frozenset({DATA_FILE, METADATA_FILE, REPORT_FILE})
SHOWN_ENTRIES = 5
# Staging folders of builds without a process id in their name (written before it was added) count as
# abandoned once this old; a build never takes a day.
UNNAMED_STAGING_STALE_SECONDS = 24 * 3600


@dataclass
class Dataset:
    """Rows (one per decision) and the metadata that says how they were made."""

    frame: pd.DataFrame
    metadata: dict[str, Any]

    @property
    def features(self) -> list[str]:
        return list(self.metadata["features"])

    def rows(self, split: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == split]


def fingerprint(frame: pd.DataFrame, config: dict[str, Any], features: list[str]) -> str:
    """sha256 of the rows (values and order), the feature list and the configuration."""
    digest = hashlib.sha256()
    digest.update(fingerprint_text(config).encode())
    digest.update(json.dumps(features).encode())
    digest.update(json.dumps(list(frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


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


def _artifact_entry(entry: Path) -> bool:
    """A file of an artifact, or the staging file of a leakage report whose audit was killed."""
    return entry.is_file() and (entry.name in ARTIFACT_ENTRIES or entry.name.startswith(f".{REPORT_FILE}."))


def check_target(out: Path) -> None:
    """Refuse an ``out`` that a build would destroy: a file, or a folder holding anything but an artifact.

    Checked before the build starts (it takes minutes at scale) and again just before the swap.
    """
    out = Path(out)
    if out.is_symlink():
        raise InputError(f"--out {out} is a symbolic link; give the folder it points to ({out.resolve()})")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is not a folder; give a new or empty folder, or an existing dataset")
    if not out.exists():
        return
    foreign = [entry.name for entry in out.iterdir() if not _artifact_entry(entry)]
    if foreign:
        raise InputError(
            f"--out {out} holds {_named(foreign)}, which is not a dataset artifact; refusing to replace it "
            "(give a new or empty folder)"
        )


_UNNAMED_SUFFIX = r"[a-z0-9_]{8}"


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


def _only_artifact_files(folder: Path) -> bool:
    return all(_artifact_entry(entry) for entry in folder.iterdir())


def _abandoned(entry: Path, out: Path, now: float) -> bool:
    """A staging folder of ``out`` whose build is gone: its process is dead (same host), or unnamed and old."""
    named = re.fullmatch(rf"\.{re.escape(out.name)}\.build-(?P<host>.+)-(?P<pid>\d+)-{_UNNAMED_SUFFIX}", entry.name)
    if named:
        return named["host"] == socket.gethostname() and not _alive(int(named["pid"]))
    if re.fullmatch(rf"\.{re.escape(out.name)}\.{_UNNAMED_SUFFIX}", entry.name):
        return now - entry.stat().st_mtime > UNNAMED_STAGING_STALE_SECONDS
    return False


def remove_abandoned_staging(out: Path) -> list[Path]:
    """Delete the hidden staging folders that killed builds of ``out`` left beside it; returns them.

    Only folders named like this module's staging folders and holding nothing but artifact files are
    touched, and never one whose build process is still alive.
    """
    out = Path(out)
    if not out.parent.is_dir():
        return []
    now, removed = time.time(), []
    for entry in out.parent.glob(f".{glob.escape(out.name)}.*"):
        try:
            ours = entry.is_dir() and not entry.is_symlink() and _only_artifact_files(entry)
            if ours and _abandoned(entry, out, now):
                shutil.rmtree(entry)
                removed.append(entry)
        except OSError:
            continue  # vanished meanwhile, or not ours to delete
    return removed


def save(dataset: Dataset, out: Path) -> Path:
    """Write atomically: a complete artifact appears at ``out`` or nothing changes there."""
    out = Path(out)
    check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(out), dir=out.parent))
    try:
        dataset.frame.to_parquet(staging / DATA_FILE, index=False)
        (staging / METADATA_FILE).write_text(json.dumps(dataset.metadata, indent=2, default=_json_default) + "\n")
        check_target(out)  # nothing else was put there while the rows were written
        if out.exists():
            retired = out.with_name(f".{out.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(out, retired)
            os.replace(staging, out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


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
        raise InputError(f"{path}: dataset format {metadata.get('format_version')} is not {FORMAT_VERSION}; rebuild it")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise InputError(f"{meta} lacks {', '.join(missing)}; rebuild the dataset")
    features, config = metadata["features"], metadata["config"]
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise InputError(f"{meta}: features must be a non-empty list of column names; rebuild the dataset")
    if not isinstance(config, dict) or any(section not in config for section in DATASET_SECTIONS):
        raise InputError(f"{meta}: config lacks one of {', '.join(DATASET_SECTIONS)}; rebuild the dataset")
    return metadata


def _read_rows(path: Path, metadata: dict[str, Any]) -> pd.DataFrame:
    import pyarrow

    data = path / DATA_FILE
    try:
        frame = pd.read_parquet(data)
    except (pyarrow.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{data} cannot be read (truncated or corrupt?): {_first_line(exc)}; rebuild it") from None
    missing = [c for c in (*ID_COLUMNS, *LABEL_COLUMNS, *metadata["features"]) if c not in frame.columns]
    if missing:
        raise InputError(f"{data} lacks column(s) {_named(missing)} that {METADATA_FILE} promises; rebuild the dataset")
    return frame


def load(path: Path) -> Dataset:
    """Read an artifact written by :func:`save`; one line naming the problem when the folder is not one."""
    path = Path(path)
    if not (path / DATA_FILE).exists() or not (path / METADATA_FILE).exists():
        raise InputError(
            f"{path} is not a dataset (expected {DATA_FILE} and {METADATA_FILE}); "
            "build one with `python -m training build-dataset --out DIR`"
        )
    metadata = _read_metadata(path)
    return Dataset(frame=_read_rows(path, metadata), metadata=metadata)
