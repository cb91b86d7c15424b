"""Whether a command can create its output where the user asked, found out before any work starts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def uncreatable(path: Path) -> str | None:
    """Why nothing can be created at ``path`` (None when it can), without leaving anything behind.

    The nearest existing ancestor must be a folder in which a folder can be made: probed by making (and
    removing) one, the only test that agrees with the OS on permissions, read-only mounts and /proc. The
    missing folders between it and ``path`` are made by the command itself, later.
    """
    ancestor = Path(os.path.abspath(path)).parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=ancestor))
    except OSError as exc:
        return f"nothing can be created in {ancestor} ({exc.strerror or exc})"
    return None


def unwritable_file(path: Path) -> str | None:
    """Why a file cannot be written at ``path`` (None when it can): a folder there, a read-only file, or nowhere
    to create it."""
    if path.is_dir():
        return f"{path} is a folder"
    if path.exists():
        return None if os.access(path, os.W_OK) else f"{path} is not writable"
    return uncreatable(path)
