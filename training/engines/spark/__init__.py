"""The pipeline's steps on Apache Spark: the one-box kernels run inside Spark partitions of whole symbols."""

import warnings


def quiet_feast_alpha_warnings() -> None:
    """Silence Feast's "alpha" warnings for SparkSource and its Spark store (one per registry read and per
    call): the lake profile depends on them knowingly, and they would bury each command's own output. Feast
    puts its own RuntimeWarning filter first when its modules are imported, so callers call this after."""
    for alpha in ("The spark data source API is an experimental", "The spark offline store is an experimental"):
        warnings.filterwarnings("ignore", message=alpha, category=RuntimeWarning)


quiet_feast_alpha_warnings()
# A Spark Connect client's toPandas hands its query metrics along in DataFrame.attrs, which pyarrow cannot
# keep when Feast converts the frame: the frame's data is unaffected.
warnings.filterwarnings("ignore", message="Could not serialize pd.DataFrame.attrs", category=UserWarning)
