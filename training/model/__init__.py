"""Stage 5, train: the LightGBM pipeline, purged cross-validation, evaluation and backtest, the MLflow run."""
