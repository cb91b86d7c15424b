"""The pipeline's steps on Apache Spark: the one-box kernels run inside Spark partitions of whole symbols."""

import warnings

# Feast warns on every SparkSource it builds (each registry read, each `feast apply`) and every Spark store call
# that the API is "alpha"; the lake profile depends on it knowingly, and the warnings would bury each command's
# own output.
for _alpha in ("The spark data source API is an experimental feature", "The spark offline store is an experimental"):
    warnings.filterwarnings("ignore", message=_alpha, category=RuntimeWarning)
