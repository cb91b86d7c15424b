"""Stage 3, Feast: the project's FeatureStore and an offline store whose point-in-time join scales.

``offline_store.AsOfPostgreSQLOfflineStore`` is Feast's PostgreSQL offline store with a sort-merge join
(instead of entity rows x feature rows); ``retrieval`` holds what it shares with the lake's store, and
``feast_internals`` the Feast internals both rely on. Nothing here is imported at package import: Feast loads the store
by its class path from feature_store.yaml, and importing Feast takes seconds.
"""
