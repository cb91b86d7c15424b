"""The dataset artifact: ``dataset.parquet`` plus ``metadata.json``, never pickle (loading a pickle runs code).

The fingerprint hashes the rows and the configuration that produced them, so it changes when either
changes and is equal when the same inputs are rebuilt. Writing goes to a temporary folder that is renamed
into place, so a failed build leaves no partial artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.config import fingerprint_text
from training.errors import InputError

DATA_FILE = "dataset.parquet"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1

# Columns of every dataset besides the features; the order they are written in.
ID_COLUMNS = ("symbol", "event_timestamp", "t1", "feature_timestamp")
LABEL_COLUMNS = ("label", "target", "ret", "next_ret", "barrier", "weight", "split")


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


def save(dataset: Dataset, out: Path) -> Path:
    """Write atomically: a complete artifact appears at ``out`` or nothing changes there."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        dataset.frame.to_parquet(staging / DATA_FILE, index=False)
        (staging / METADATA_FILE).write_text(json.dumps(dataset.metadata, indent=2, default=_json_default) + "\n")
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


def load(path: Path) -> Dataset:
    """Read an artifact written by :func:`save`; a clear error when the folder is not one."""
    path = Path(path)
    data, meta = path / DATA_FILE, path / METADATA_FILE
    if not data.exists() or not meta.exists():
        raise InputError(
            f"{path} is not a dataset (expected {DATA_FILE} and {METADATA_FILE}); "
            "build one with `python -m training build-dataset --out DIR`"
        )
    metadata = json.loads(meta.read_text())
    if metadata.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: dataset format {metadata.get('format_version')} is not {FORMAT_VERSION}; rebuild it")
    frame = pd.read_parquet(data)
    return Dataset(frame=frame, metadata=metadata)
