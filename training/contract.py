"""Names that training and serving must agree on, defined once (and cheap to import)."""

CHAMPION_ALIAS = "champion"  # the registered model version `train` points at and `predict` serves
DEFAULT_FEATURE_SERVICE = "technical_model_v1"  # the model's inputs: scale-free forms only
AUDIT_FEATURE = "bar_timestamp"  # the joined feature row's own event timestamp, served with every row
