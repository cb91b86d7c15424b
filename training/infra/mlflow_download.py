"""Download one artifact of an MLflow run without MLflow's progress bar.

MLflow draws a tqdm bar on stderr for every download; a command that fetches many small files (PBO reads every
earlier trial's path returns) would print one per file between its own lines. The switch is MLflow's own
environment variable, set for the call only and put back as it was.
"""

from __future__ import annotations

import os
import threading

_SWITCH = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
_LOCK = threading.Lock()  # tune's trials run in threads: one download flips the variable at a time


def download_artifact(run_id: str, artifact_path: str, tracking_uri: str | None = None) -> str:
    """The local path of ``artifact_path`` of run ``run_id``, fetched with no progress bar."""
    import mlflow

    with _LOCK:
        before = os.environ.get(_SWITCH)
        os.environ[_SWITCH] = "false"
        try:
            return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path,
                                                       tracking_uri=tracking_uri)  # fmt: skip
        finally:
            if before is None:
                os.environ.pop(_SWITCH, None)
            else:
                os.environ[_SWITCH] = before
