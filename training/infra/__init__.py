"""Where the data lives: connection settings, PostgreSQL access and bulk COPY, the offline store's tables.

``settings`` is the only module that reads the environment (PG*, REDIS_URL, MLFLOW_TRACKING_URI); every
other module asks it. Nothing here knows about bars, features or models.
"""
