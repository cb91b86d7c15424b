"""Leakage-free financial machine learning on daily OHLCV bars.

Kept free of heavy imports: ``import training`` must not import Feast, MLflow or LightGBM.
"""
