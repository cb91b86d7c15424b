"""The pipeline's steps on Apache Spark: the one-box kernels run inside Spark partitions of whole symbols."""
