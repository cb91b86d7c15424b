"""Stage 4, dataset: entity rows at bar closes, point-in-time features through Feast, the artifact on disk.

``builder`` joins the pieces (features, labels, weights, hold-out split) into one row per decision;
``artifact`` writes and reads the Parquet + JSON result, never pickle.
"""
