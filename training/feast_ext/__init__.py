"""Extensions of Feast for this project.

``offline_store.AsOfPostgreSQLOfflineStore`` is Feast's PostgreSQL offline store with a point-in-time join
that scales (sort-merge instead of entity rows x feature rows). Nothing here is imported at package import:
Feast loads the store by its class path from feature_store.yaml, and importing Feast takes seconds.
"""
