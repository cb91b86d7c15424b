"""Every Feast internal the project relies on (training/feast_store/feast_internals.py) is still there, with
the parameters the project passes: a Feast upgrade that moves one fails here, naming it."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

import pytest

from training.feast_store import feast_internals
from training.feast_store.feast_internals import RELIED_ON

NAMED = sorted(name for name in RELIED_ON if " " not in name)


def resolve(dotted: str) -> Any:
    """The object at a dotted path: the longest importable module prefix, then attributes (or pydantic fields)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            fields = getattr(found, "model_fields", {}) if isinstance(found, type) else {}
            if name in fields:
                found = fields[name]
            elif hasattr(found, name):
                found = getattr(found, name)
            else:
                raise AttributeError(f"{dotted}: {name} is gone")
        return found
    raise ImportError(dotted)


@pytest.mark.parametrize("dotted", NAMED)
def test_the_internal_is_there_with_its_parameters(dotted: str):
    found = resolve(dotted)
    wanted = RELIED_ON[dotted]
    if wanted:
        assert tuple(inspect.signature(found).parameters)[: len(wanted)] == wanted


def test_every_internal_is_listed_in_the_docstring():
    doc = feast_internals.__doc__ or ""
    assert [name for name in RELIED_ON if f"``{name}``" not in doc and name not in doc] == []


def test_the_query_context_has_the_fields_the_plan_reads():
    from feast.infra.offline_stores.offline_utils import FeatureViewQueryContext

    names = {f.name for f in dataclasses.fields(FeatureViewQueryContext)}
    read = {"name", "ttl", "features", "field_mapping", "timestamp_field", "created_timestamp_column"}
    assert read | {"table_subquery"} <= names


def test_entity_select_modes_and_the_redis_dedup_switch():
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
        EntitySelectMode,
        PostgreSQLOfflineStoreConfig,
    )
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig

    assert {m.value for m in EntitySelectMode} == {"temp_table", "embed_query"}
    assert PostgreSQLOfflineStoreConfig.model_fields["entity_select_mode"].default == EntitySelectMode.temp_table
    assert RedisOnlineStoreConfig(skip_dedup=True).skip_dedup is True


def test_the_redis_connection_string_passes_null_and_numbers_to_redis_py():
    from feast.infra.online_stores.redis import RedisOnlineStore

    nodes, params = RedisOnlineStore._parse_connection_string("127.0.0.1:6379,db=0,socket_timeout=2.0,retry=null")
    assert nodes == [{"host": "127.0.0.1", "port": "6379"}]
    assert params == {"db": 0, "socket_timeout": 2.0, "retry": None}


def test_feasts_cli_names_its_file_and_repository_in_the_click_context():
    source = inspect.getsource(resolve("feast.cli.cli"))
    assert 'ctx.obj["CHDIR"]' in source and 'ctx.obj["FS_YAML_FILE"]' in source


def test_on_demand_outputs_are_named_projection_then_feature():
    from feast import Entity, FeatureView, Field, FileSource
    from feast.on_demand_feature_view import on_demand_feature_view
    from feast.types import Float64
    from feast.value_type import ValueType

    source = FileSource(path="unused.parquet", timestamp_field="ts")
    entity = Entity(name="e", join_keys=["e"], value_type=ValueType.STRING)
    view = FeatureView(name="base", entities=[entity], source=source, schema=[Field(name="x", dtype=Float64)])

    @on_demand_feature_view(sources=[view], schema=[Field(name="y", dtype=Float64)], mode="pandas")
    def doubled(frame):
        return frame.assign(y=frame["x"] * 2)[["y"]]

    assert doubled._get_projected_feature_name("y") == "doubled__y"
    assert doubled.with_name("other")._get_projected_feature_name("y") == "other__y"
