"""The production stack as docker-compose.yml declares it (issue 18, item 8); no Docker engine on CI machines.

Checked from the files: images pinned to versions, ports on the loopback interface only, a Redis password,
healthchecks, nothing installed at container start, MLflow's server on the client's minor version, and the
MLflow backend URI built with the database password URL-encoded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import yaml

from training.infra.settings import PROJECT_ROOT

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
MLFLOW_DOCKERFILE = PROJECT_ROOT / "docker" / "mlflow" / "Dockerfile"


def _base_images() -> dict[str, str]:
    """Every image a service runs: its `image`, or the FROM of the Dockerfile it builds."""
    images = {}
    for name, service in SERVICES.items():
        if "build" in service:
            dockerfile = PROJECT_ROOT / service["build"] / "Dockerfile"
            images[name] = re.search(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE).group(1)
        else:
            images[name] = service["image"]
    return images


def test_every_image_is_pinned_to_a_version():
    for name, image in _base_images().items():
        tag = image.rpartition(":")[2]
        assert ":" in image and "latest" not in tag, f"{name}: {image}"
        assert re.match(r"v?\d+\.\d+(\.\d+)?(-|$)", tag), f"{name}: {image} is not pinned to a release"


def test_ports_are_published_on_the_loopback_interface_only():
    published = [(name, port) for name, s in SERVICES.items() for port in s.get("ports", [])]
    assert {name for name, _ in published} == {"timescaledb", "redis", "mlflow", "serve"}
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_every_service_has_a_healthcheck_and_the_scorer_checks_health():
    for name, service in SERVICES.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "/health" in " ".join(SERVICES["serve"]["healthcheck"]["test"])
    assert SERVICES["serve"]["build"] == "." and (PROJECT_ROOT / "Dockerfile").is_file()
    assert "HEALTHCHECK" in (PROJECT_ROOT / "Dockerfile").read_text()


def test_redis_requires_a_password_and_the_scorer_sends_it():
    redis = SERVICES["redis"]
    assert "--requirepass" in " ".join(redis["command"])
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert "${REDIS_PASSWORD}@redis:6379" in SERVICES["serve"]["environment"]["REDIS_URL"]
    example = (PROJECT_ROOT / ".env.example").read_text()
    assert re.search(r"^REDIS_PASSWORD=\S+", example, re.MULTILINE)
    assert re.search(r"^REDIS_URL=redis://:[^@\s]+@", example, re.MULTILINE)


def test_nothing_is_installed_when_a_container_starts():
    for name, service in SERVICES.items():
        command = service.get("command", "")
        assert "pip install" not in (command if isinstance(command, str) else " ".join(command)), name


def test_mlflow_server_runs_the_client_minor_version():
    server = re.search(r"^FROM\s+\S+:v?(\d+\.\d+)", MLFLOW_DOCKERFILE.read_text(), re.MULTILINE).group(1)
    client = ".".join(version("mlflow").split(".")[:2])
    assert server == client
    assert "psycopg2-binary==" in MLFLOW_DOCKERFILE.read_text()


def test_mlflow_backend_uri_carries_a_url_encoded_password(tmp_path: Path):
    """docker/mlflow/start.py, run with a stand-in `mlflow` on PATH that prints what it was given."""
    from sqlalchemy.engine import make_url

    stand_in = tmp_path / "mlflow"
    stand_in.write_text('#!/bin/sh\necho "$MLFLOW_BACKEND_STORE_URI"\necho "$@"\n')
    stand_in.chmod(0o755)
    password = "p@ss:w/rd#1%"
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "MLFLOW_DB_USER": "ml flow",
           "MLFLOW_DB_PASSWORD": password}  # fmt: skip
    start = PROJECT_ROOT / "docker" / "mlflow" / "start.py"
    out = subprocess.run([sys.executable, str(start)], env=env, capture_output=True, text=True, check=True).stdout
    uri, arguments = out.splitlines()
    url = make_url(uri)
    assert (url.username, url.password, url.host, url.database) == ("ml flow", password, "mlflow-db", "mlflow")
    assert password not in arguments and "--serve-artifacts" in arguments
