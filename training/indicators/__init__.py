"""Stage 2, features: the 23 indicators' definition table, their TA-Lib computation and scale-free forms.

``definitions`` is the one table (name, family, function, inputs, lookback) that drives computation, the
Feast schemas and the docs; ``backfill`` writes ``features.technical_indicators`` from the stored bars.
"""
