"""Stage 4, dataset: entity rows at bar closes, point-in-time features through Feast, the artifact on disk.

``builder`` joins the pieces (features, labels, weights, hold-out split) into one row per decision;
``artifact`` writes and reads the Parquet + JSON result, never pickle. Each engine runs the build over its
own store (:meth:`training.engines.Engine.build_dataset`); the lake's writes the same artifact.
"""
