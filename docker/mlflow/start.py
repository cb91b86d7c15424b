"""Start the MLflow tracking server on its PostgreSQL backend store.

The backend URI is built here with the user and password URL-encoded, so a password holding ``@ : / #`` or
``%`` works, and it reaches MLflow through MLFLOW_BACKEND_STORE_URI rather than the process's arguments.
"""

import os
from urllib.parse import quote

user = quote(os.environ["MLFLOW_DB_USER"], safe="")
password = quote(os.environ["MLFLOW_DB_PASSWORD"], safe="")
host = os.environ.get("MLFLOW_DB_HOST", "mlflow-db")
os.environ["MLFLOW_BACKEND_STORE_URI"] = f"postgresql://{user}:{password}@{host}:5432/mlflow"
os.execvp(
    "mlflow",
    ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", "--artifacts-destination", "/mlartifacts",
     "--serve-artifacts"],
)  # fmt: skip
