"""The Feast repository as a user drives it: apply, list, apply again (a no-op), materialize, read online.

Runs against the configured PostgreSQL and online store (Redis when REDIS_URL is set, else SQLite) on the
session's pipeline database, under a Feast project of its own so that "first apply" and "nothing
materialized yet" hold whatever other test modules did to the session's project.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from subprocess import PIPE

import pandas as pd
import pytest
from psycopg import sql

from tests.conftest import SESSION, run_cli, run_module
from training.indicators.definitions import FAMILIES, by_family
from training.indicators.scale_free import scale_free_forms
from training.infra import settings

PROJECT = f"{SESSION}_repo"
BUNDLED_SYMBOLS = ["AAPL", "FB", "GOOG", "IBM", "MSFT"]
# Registry table -> the columns that must not change when nothing changed (protos and last-updated times).
# Feast rewrites the managed-infra row on every SQLite apply with the same proto, so its time is left out.
REGISTRY_TABLES = {
    "data_sources": ("data_source_name", "data_source_proto", "last_updated_timestamp"),
    "entities": ("entity_name", "entity_proto", "last_updated_timestamp"),
    "feature_views": ("feature_view_name", "feature_view_proto", "last_updated_timestamp"),
    "on_demand_feature_views": ("feature_view_name", "feature_view_proto", "last_updated_timestamp"),
    "feature_services": ("feature_service_name", "feature_service_proto", "last_updated_timestamp"),
    "managed_infra": ("infra_name", "infra_proto"),
}


@dataclass
class Applied:
    first: subprocess.CompletedProcess
    second: subprocess.CompletedProcess
    listing: subprocess.CompletedProcess
    registry_before: dict[str, list[tuple]]
    registry_after: dict[str, list[tuple]]


def _started(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "training", *args], stdout=PIPE, stderr=PIPE, text=True)


def _finished(process: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = process.communicate()
    assert process.returncode == 0, f"{' '.join(process.args)} failed:\n{out}\n{err}"
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(scope="module")
def repo(pipeline):
    """On the session's bundled data and features: `python -m training feast apply` twice, and
    `feast feature-views list`, as a user runs them (the second apply and the listing side by side)."""
    from training.infra import db

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEAST_PROJECT", PROJECT)
        first = run_module("feast", "apply")
        with db.connect() as conn:
            before = registry_rows(conn)
        second, listing = _started("feast", "apply"), _started("feast", "feature-views", "list")
        second, listing = _finished(second), _finished(listing)
        with db.connect() as conn:
            after = registry_rows(conn)
        yield Applied(first, second, listing, before, after)
        from training.feast_store.repository import feature_store

        store = feature_store()  # remove this project's online rows (Redis keys or SQLite tables)
        store._get_provider().teardown_infra(PROJECT, store.list_feature_views(), store.list_entities())


def registry_rows(conn) -> dict[str, list[tuple]]:
    """The project's registry rows: what a real change (or a needless rewrite) would alter."""
    rows = {}
    for table, columns in REGISTRY_TABLES.items():
        query = sql.SQL("SELECT {} FROM {} WHERE project_id = %s ORDER BY 1").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
        )
        rows[table] = conn.execute(query, (PROJECT,)).fetchall()
    return rows


def test_first_apply_registers_every_view_and_service(repo):
    from training.feast_store.repository import feature_store

    assert f"Applying changes for project {PROJECT}" in repo.first.stdout
    store = feature_store()
    services = {s.name: s for s in store.list_feature_services()}
    assert sorted(services) == ["technical_indicators_v1", "technical_model_v1"]
    for service in services.values():
        served = [f.name for p in service.feature_view_projections for f in p.features]
        assert "bar_timestamp" in served and len(served) == 24  # 23 features (or their model forms) + audit


def test_feature_views_list_shows_the_five_family_views_and_the_on_demand_view(repo):
    listed = repo.listing.stdout.splitlines()
    header, rows = listed[0].split(), [line.split() for line in listed[1:] if line.strip()]
    assert header[:3] == ["NAME", "ENTITIES", "TYPE"]
    kinds = {row[0]: row[2] for row in rows}
    assert kinds == {**dict.fromkeys(FAMILIES, "FeatureView"), "scale_free_indicators": "OnDemandFeatureView"}


def test_second_apply_changes_nothing(repo):
    assert repo.registry_before["feature_views"], "the first apply registered no feature view"
    assert repo.registry_after == repo.registry_before  # not a row rewritten, not a timestamp touched
    if settings.redis() is None:
        # Feast's CLI diffs the registry (and prints the diff) only for the SQLite online store.
        assert "No changes to registry" in repo.second.stdout
        assert "No changes to infrastructure" in repo.second.stdout
    else:
        # With Redis, Feast's CLI skips the diff and prints "Deploying infrastructure for <view>" for every
        # view on every apply, even when nothing changed; the registry comparison above is the proof.
        changed = ("Created", "Updated", "Deleted", "Removing")
        assert not [line for line in repo.second.stdout.splitlines() if line.startswith(changed)], repo.second.stdout


def _latest_offline(conn) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT DISTINCT ON (symbol) *, event_timestamp AS bar_timestamp FROM features.technical_indicators "
        "ORDER BY symbol, event_timestamp DESC"
    )
    columns = [c.name for c in rows.description]
    return pd.DataFrame(rows.fetchall(), columns=columns).set_index("symbol", drop=False)


def _equal(online, offline) -> bool:
    if online is None or offline is None or (isinstance(offline, float) and math.isnan(offline)):
        return (online is None or math.isnan(online)) and (offline is None or math.isnan(offline))
    if isinstance(offline, datetime):
        return pd.Timestamp(online) == pd.Timestamp(offline)
    return math.isclose(online, offline, rel_tol=1e-12, abs_tol=0.0)


def test_materialized_online_values_equal_the_latest_offline_row_of_every_symbol(repo, conn):
    result = run_cli("materialize")
    assert result.exit_code == 0, result.output
    assert os.environ["FEAST_PROJECT"] == PROJECT
    from training.feast_store.repository import feature_store

    store = feature_store()
    offline = _latest_offline(conn)
    assert sorted(offline.index) == BUNDLED_SYMBOLS
    assert offline["bar_timestamp"].max() < pd.Timestamp("2014-01-01", tz="UTC")  # historical data, not "now"

    features = [f"{family}:{i.name}" for family in FAMILIES for i in by_family(family)]
    features += ["price_action:close", "volume:volume", "price_action:bar_timestamp"]
    model_forms = [f.name for f in store.get_on_demand_feature_view("scale_free_indicators").features]
    features += [f"scale_free_indicators:{name}" for name in model_forms]
    online = store.get_online_features(
        features=features, entity_rows=[{"symbol": s} for s in BUNDLED_SYMBOLS]
    ).to_dict()
    derived = scale_free_forms({c: offline.loc[BUNDLED_SYMBOLS, c].tolist() for c in offline.columns})

    compared = 0
    for row, symbol in enumerate(BUNDLED_SYMBOLS):
        for ref in features:
            view, name = ref.split(":")
            expected = derived[name][row] if view == "scale_free_indicators" else offline.loc[symbol, name]
            assert _equal(online[name][row], expected), (symbol, ref, online[name][row], expected)
            compared += 1
    assert compared == len(BUNDLED_SYMBOLS) * (23 + 3 + 14)
