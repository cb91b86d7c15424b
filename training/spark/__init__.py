"""The pipeline's steps on Apache Spark: the one-box kernels run inside Spark partitions of whole symbols."""

import warnings

# Feast warns on every SparkSource it builds (each registry read, each `feast apply`) that the API is "alpha";
# the lake profile depends on it knowingly, and the warning would bury each command's own output.
warnings.filterwarnings(
    "ignore", message="The spark data source API is an experimental feature", category=RuntimeWarning
)
