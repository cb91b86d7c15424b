"""Feast's own CLI, typed in a fresh copy of feature_repo/ with nothing but the environment: no project command.

The copy starts with a feature_store.yaml resolved for another database and project (stale); Feast's CLI
stops in one line naming the command that rewrites it and leaves the file alone; once it is rewritten for
the environment (as `python -m training feast` does), `feast apply` (twice), `feast feature-views list`, `feast plan`,
`feast materialize`, `feast materialize-incremental`, `feast serve` and `feast ui` run on the session's
pipeline database under a Feast project of their own. Every Feast process sees PGPASSWORD (the configured
one, or a marker the trust-auth test server ignores), and no file written anywhere holds it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from psycopg import sql

from tests.conftest import SESSION, free_port
from tests.test_feature_repo import REGISTRY_TABLES
from training.errors import ProjectError
from training.indicators.definitions import FAMILIES, INDICATORS
from training.infra import settings

PROJECT = f"{SESSION}_cli"
FEAST = str(Path(sys.executable).with_name("feast"))
PASSWORD = os.environ.get("PGPASSWORD") or "pgpassword-marker-4f1c"
SYMBOL = "MSFT"


@dataclass
class Session:
    repo: Path
    env: dict[str, str]
    stale: subprocess.CompletedProcess
    first: subprocess.CompletedProcess
    second: subprocess.CompletedProcess
    listing: subprocess.CompletedProcess
    plan: subprocess.CompletedProcess
    registry_before: dict[str, list[tuple]]
    registry_after: dict[str, list[tuple]]
    partial_checks: list = field(default_factory=list)
    incremental: subprocess.CompletedProcess | None = None
    servers: dict[str, tuple[subprocess.Popen, int]] = field(default_factory=dict)


def feast(session_env: dict[str, str], repo: Path, *args: str) -> subprocess.Popen:
    """`feast ARGS` run in ``repo`` as a user types it (no -c, no -f)."""
    return subprocess.Popen(
        [FEAST, *args], cwd=repo, env=session_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finished(process: subprocess.Popen, expect: int = 0) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=600)
    assert process.returncode == expect, f"{' '.join(process.args)} exited {process.returncode}:\n{out}\n{err}"
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def registry_rows(project: str) -> dict[str, list[tuple]]:
    from training.infra import db

    rows = {}
    with db.connect() as conn:
        for table, columns in REGISTRY_TABLES.items():
            query = sql.SQL("SELECT {} FROM {} WHERE project_id = %s ORDER BY 1").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
            )
            rows[table] = conn.execute(query, (project,)).fetchall()
    return rows


def newest_offline_bar() -> datetime:
    from training.infra import db

    with db.connect() as conn:
        return conn.execute("SELECT max(event_timestamp) FROM features.technical_indicators").fetchone()[0]


def online_checks() -> list:
    """check-online's comparison of this project's online store with the newest offline rows."""
    from training.feast_store.repository import feature_store
    from training.serving.online_store import check_online

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEAST_PROJECT", PROJECT)
        return check_online(feature_store())


def serve(env: dict[str, str], repo: Path, command: str) -> tuple[subprocess.Popen, int]:
    """`feast serve` or `feast ui` on a free loopback port, in a process group of its own; its log in the repo."""
    port = free_port()
    log = (repo / f"{command}.log").open("w")  # grepped for the password with the rest
    process = subprocess.Popen(
        [FEAST, command, "--host", "127.0.0.1", "--port", str(port)],
        cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    return process, port


def wait_http(process: subprocess.Popen, url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{' '.join(process.args)} did not answer {url} (see its log)") from None
            time.sleep(0.5)


@pytest.fixture(scope="module")
def cli_session(pipeline, tmp_path_factory) -> Session:
    repo = tmp_path_factory.mktemp("feature_repo_copy")
    for name in (settings.feast_template(), "feature_definitions.py", ".feastignore"):
        shutil.copy(settings.FEATURE_REPO / name, repo / name)
    resolved, template = repo / "feature_store.yaml", repo / settings.feast_template()
    with pytest.MonkeyPatch.context() as patch:  # a file resolved for another database and project
        patch.setenv("PGDATABASE", "some_other_database")
        patch.setenv("FEAST_PROJECT", f"{PROJECT}_old")
        settings.write_feast_yaml(resolved, template)
    env = {**os.environ, "FEAST_PROJECT": PROJECT, "PGPASSWORD": PASSWORD}

    stale_text = resolved.read_text()
    stale = finished(feast(env, repo, "feature-views", "list"), expect=2)
    assert resolved.read_text() == stale_text  # a validator compares, never writes
    with pytest.MonkeyPatch.context() as patch:  # what `python -m training feast` does first, for this copy
        patch.setenv("FEAST_PROJECT", PROJECT)
        settings.write_feast_yaml(resolved, template)
    first = finished(feast(env, repo, "apply"))
    before = registry_rows(PROJECT)
    runs = [feast(env, repo, "apply"), feast(env, repo, "feature-views", "list"), feast(env, repo, "plan")]
    second, listing, plan = map(finished, runs)
    session = Session(repo, env, stale, first, second, listing, plan, before, registry_rows(PROJECT))
    try:
        newest = newest_offline_bar()
        middle = (newest - timedelta(days=60)).astimezone(UTC).replace(tzinfo=None)
        finished(feast(env, repo, "materialize", "2000-01-01T00:00:00", middle.isoformat(timespec="seconds")))
        session.partial_checks = online_checks()
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
        session.incremental = finished(feast(env, repo, "materialize-incremental", now))
        session.servers = {"serve": serve(env, repo, "serve"), "ui": serve(env, repo, "ui")}
        yield session
    finally:
        for process, _ in session.servers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # the server's own process group (uvicorn/gunicorn workers)
                process.wait(timeout=60)
        from training.feast_store.repository import feature_store

        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("FEAST_PROJECT", PROJECT)
            store = feature_store()  # remove this project's online rows (Redis keys or SQLite tables)
            store._get_provider().teardown_infra(PROJECT, store.list_feature_views(), store.list_entities())


def test_a_stale_resolved_file_stops_feasts_cli_in_one_line_naming_the_rewrite(cli_session):
    lines = cli_session.stale.stderr.strip().splitlines()
    assert len(lines) == 1, cli_session.stale.stderr
    assert "feature_store.yaml was resolved for" in lines[0] and "python -m training feast" in lines[0]
    assert "/some_other_database" in lines[0] and f"project {PROJECT}_old -> project {PROJECT}" in lines[0]
    assert "NAME" not in cli_session.stale.stdout  # it stopped before listing anything


def test_apply_registers_the_repository_and_a_second_apply_changes_nothing(cli_session):
    assert f"Applying changes for project {PROJECT}" in cli_session.first.stdout
    services = [row[0] for row in cli_session.registry_after["feature_services"]]
    assert services == ["technical_indicators_v1", "technical_model_v1"]
    assert cli_session.registry_before["feature_views"], "the first apply registered no feature view"
    assert cli_session.registry_after == cli_session.registry_before  # not a row rewritten, not a time touched
    changed = ("Created", "Updated", "Deleted", "Removing")
    assert not [line for line in cli_session.second.stdout.splitlines() if line.startswith(changed)]


def test_feature_views_list_shows_the_five_family_views(cli_session):
    rows = [line.split() for line in cli_session.listing.stdout.splitlines()[1:] if line.strip()]
    kinds = {row[0]: row[2] for row in rows}
    assert kinds == {**dict.fromkeys(FAMILIES, "FeatureView"), "scale_free_indicators": "OnDemandFeatureView"}


def test_plan_after_apply_plans_no_change(cli_session):
    assert "No changes to registry" in cli_session.plan.stdout, cli_session.plan.stdout


def test_materialize_incremental_brings_the_newest_offline_row_online(cli_session):
    assert cli_session.partial_checks and not any(c.ok for c in cli_session.partial_checks)  # older bars only
    assert all(c.online_bar is not None and c.online_bar < c.offline_bar for c in cli_session.partial_checks)
    checks = online_checks()
    assert [c.symbol for c in checks if not c.ok] == [], [(c.symbol, c.mismatches[:3]) for c in checks]
    assert all(c.checked > 23 for c in checks)


def _post(port: int, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/get-online-features",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    names = answer["metadata"]["feature_names"]
    return {name: result["values"][0] for name, result in zip(names, answer["results"], strict=True)}


def test_feast_serve_answers_the_feature_services_with_the_newest_offline_row(cli_session):
    from training.feast_store.repository import feature_store
    from training.serving.online_store import latest_offline_rows, same_value

    process, port = cli_session.servers["serve"]
    wait_http(process, f"http://127.0.0.1:{port}/health")
    served = _post(port, {"feature_service": "technical_indicators_v1", "entities": {"symbol": [SYMBOL]}})
    offline = latest_offline_rows([SYMBOL]).loc[SYMBOL]
    indicators = [i.name for i in INDICATORS]
    assert len(indicators) == 23 and set(indicators) <= set(served)
    assert {n: served[n] for n in indicators if not same_value(served[n], offline[n])} == {}
    assert pd.Timestamp(served["bar_timestamp"], unit="s", tz="UTC") == offline["event_timestamp"]

    # The model's service, as predict reads it in process: the same values over HTTP.
    model = _post(port, {"feature_service": "technical_model_v1", "entities": {"symbol": [SYMBOL]}})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEAST_PROJECT", PROJECT)
        store = feature_store()
        service = store.get_feature_service("technical_model_v1")
        direct = store.get_online_features(features=service, entity_rows=[{"symbol": SYMBOL}]).to_dict()
    assert set(model) == set(direct)
    values = [n for n in model if n not in ("symbol", "bar_timestamp")]  # the stamp: seconds over HTTP, a datetime here
    assert {n: (model[n], direct[n][0]) for n in values if not same_value(model[n], direct[n][0])} == {}
    assert pd.Timestamp(model["bar_timestamp"], unit="s", tz="UTC") == pd.Timestamp(direct["bar_timestamp"][0])


def test_feast_ui_starts_and_answers_http(cli_session):
    process, port = cli_session.servers["ui"]
    wait_http(process, f"http://127.0.0.1:{port}/")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/projects-list.json", timeout=30) as response:
        projects = json.loads(response.read())["projects"]
    assert PROJECT in [p["id"] for p in projects]


def test_no_written_file_holds_the_password(cli_session):
    written = [cli_session.repo, Path(os.environ["OHLCV_STATE_DIR"])]
    files = [path for folder in written for path in folder.rglob("*") if path.is_file()]
    assert cli_session.repo / "feature_store.yaml" in files
    assert [path for path in files if PASSWORD.encode() in path.read_bytes()] == []


def test_a_redis_password_stays_a_variable_and_feasts_cli_needs_it_exported(tmp_path, monkeypatch):
    from training.feast_store.repository import check_resolved_for

    monkeypatch.setenv("REDIS_URL", "redis://:redis-marker-9d2e@127.0.0.1:6379/0")
    monkeypatch.setenv("PGHOST", os.environ.get("PGHOST") or "127.0.0.1")  # resolving only: nothing connects
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    text = settings.write_feast_yaml(tmp_path / "feature_store.yaml").read_text()
    assert "redis-marker-9d2e" not in text and "password=${REDIS_PASSWORD}" in text
    with pytest.raises(ProjectError, match="export the same password as REDIS_PASSWORD"):
        check_resolved_for(settings.feast_target())
    monkeypatch.setenv("REDIS_PASSWORD", "redis-marker-9d2e")
    check_resolved_for(settings.feast_target())
