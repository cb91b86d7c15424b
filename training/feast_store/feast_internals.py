"""The parts of Feast 0.67 the project relies on beyond its documented API, each pinned by
tests/test_feast_internals.py so an upgrade that moves one fails there, by name, instead of deep in a run.

- ``feast.infra.offline_stores.offline_utils.infer_event_timestamp_from_entity_df``: the entity rows'
  timestamp column, as the stock stores infer it.
- ``feast.infra.offline_stores.offline_utils.get_expected_join_keys``: the join keys a request needs.
- ``feast.infra.offline_stores.offline_utils.get_feature_view_query_context``: each view's source, keys,
  timestamps, TTL and features, which :mod:`training.feast_store.plan` turns into as-of joins.
- ``feast.infra.offline_stores.offline_utils.FeatureViewQueryContext``: the fields of those contexts.
- ``feast.infra.offline_stores.offline_store.RetrievalJob._to_arrow_internal``: the hook ``to_arrow`` calls
  before it applies on-demand views (the PostgreSQL job's result).
- ``feast.infra.offline_stores.contrib.postgres_offline_store.postgres.PostgreSQLRetrievalJob.__init__``:
  the stock job's constructor, which the project's jobs call.
- ``feast.infra.offline_stores.contrib.postgres_offline_store.postgres.EntitySelectMode``: the
  ``entity_select_mode`` values of the PostgreSQL store's settings.
- ``feast.infra.offline_stores.contrib.spark_offline_store.spark.SparkRetrievalJob.__init__``: the stock Spark
  job's constructor; the project's job overrides its ``to_spark_df`` and reads its ``spark_session``.
- ``feast.infra.offline_stores.contrib.spark_offline_store.spark.SparkRetrievalJob.to_spark_df``: the frame
  every other output of a Spark job is made from.
- ``feast.on_demand_feature_view.OnDemandFeatureView.get_requested_odfvs``: the on-demand views a request
  names.
- ``feast.on_demand_feature_view.OnDemandFeatureView.transform_arrow``: one view's transformation of a batch,
  run on Spark's executors.
- ``feast.infra.provider.Provider.update_infra``: creates a view's online table (``ensure_online_tables``).
- ``feast.feature_store.FeatureStore._get_provider``: the provider of a store.
- ``feast.infra.online_stores.redis.RedisOnlineStoreConfig.skip_dedup``: lets materialize overwrite a
  corrected bar with the same event time.
- ``feast.infra.online_stores.redis.RedisOnlineStore._parse_connection_string``: each ``key=value`` of the
  Redis connection string is read as JSON and passed to redis-py, so ``retry=null`` turns its retries off
  (serving's Redis calls are bounded by their socket timeouts alone).
- ``feast.cli.cli``: Feast's click context names the resolved file ``FS_YAML_FILE`` and the repository
  ``CHDIR`` (the validators name the file Feast's CLI loaded).
- on-demand output naming: a full feature name is ``<projection name>__<feature>``.
- ``feast.infra.online_stores.helpers.compute_versioned_name``,
  ``feast.infra.online_stores.redis.RedisOnlineStore._generate_hset_keys_for_features`` and
  ``feast.infra.online_stores.redis.RedisOnlineStore._generate_redis_keys_for_entities``: the Redis store's hash
  fields and keys (:mod:`training.serving.online_reader` reads Redis with them).
- ``feast.infra.online_stores.redis.RedisOnlineStore._read_hash_fields``: its one pipeline of HMGETs.
- ``feast.on_demand_feature_view.OnDemandFeatureView.transform_dict``: a python-mode view's transformation of
  the columns read.
"""

from __future__ import annotations

# dotted name -> the leading parameter names relied on (() for a class, field or naming convention)
RELIED_ON: dict[str, tuple[str, ...]] = {
    "feast.infra.offline_stores.offline_utils.infer_event_timestamp_from_entity_df": ("entity_schema",),
    "feast.infra.offline_stores.offline_utils.get_expected_join_keys": ("project", "feature_views", "registry"),
    "feast.infra.offline_stores.offline_utils.get_feature_view_query_context": (
        "feature_refs",
        "feature_views",
        "registry",
        "project",
        "entity_df_timestamp_range",
    ),
    "feast.infra.offline_stores.offline_utils.FeatureViewQueryContext": (),
    "feast.infra.offline_stores.offline_store.RetrievalJob._to_arrow_internal": ("self", "timeout"),
    "feast.infra.offline_stores.contrib.postgres_offline_store.postgres.PostgreSQLRetrievalJob.__init__": (
        "self",
        "query",
        "config",
        "full_feature_names",
        "on_demand_feature_views",
        "metadata",
    ),
    "feast.infra.offline_stores.contrib.postgres_offline_store.postgres.EntitySelectMode": (),
    "feast.infra.offline_stores.contrib.spark_offline_store.spark.SparkRetrievalJob.__init__": (
        "self",
        "spark_session",
        "query",
        "full_feature_names",
        "config",
        "on_demand_feature_views",
        "metadata",
    ),
    "feast.infra.offline_stores.contrib.spark_offline_store.spark.SparkRetrievalJob.to_spark_df": ("self",),
    "feast.on_demand_feature_view.OnDemandFeatureView.get_requested_odfvs": ("feature_refs", "project", "registry"),
    "feast.on_demand_feature_view.OnDemandFeatureView.transform_arrow": ("self", "pa_table", "full_feature_names"),
    "feast.infra.provider.Provider.update_infra": (
        "self",
        "project",
        "tables_to_delete",
        "tables_to_keep",
        "entities_to_delete",
        "entities_to_keep",
        "partial",
    ),
    "feast.feature_store.FeatureStore._get_provider": ("self",),
    "feast.infra.online_stores.redis.RedisOnlineStoreConfig.skip_dedup": (),
    "feast.infra.online_stores.redis.RedisOnlineStore._parse_connection_string": ("connection_string",),
    "feast.cli.cli": (),
    "on-demand output naming": (),
    "feast.infra.online_stores.helpers.compute_versioned_name": ("table", "enable_versioning"),
    "feast.infra.online_stores.redis.RedisOnlineStore._generate_hset_keys_for_features": (
        "self",
        "feature_view",
        "requested_features",
        "fv_name_override",
    ),
    "feast.infra.online_stores.redis.RedisOnlineStore._generate_redis_keys_for_entities": (
        "self",
        "config",
        "entity_keys",
    ),
    "feast.infra.online_stores.redis.RedisOnlineStore._read_hash_fields": ("self", "config", "commands"),
    "feast.on_demand_feature_view.OnDemandFeatureView.transform_dict": ("self", "feature_dict"),
}
