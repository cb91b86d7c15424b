"""A Spark retrieval job's on-demand feature views, computed on the executors instead of the driver.

Feast applies on-demand views in ``RetrievalJob.to_arrow``, on the driver, after collecting every row; a
training set of a whole market must stay on the cluster. Here each Arrow batch of the job's Spark frame
goes through the same ``OnDemandFeatureView.transform_arrow`` (views shipped as their registry protos, the
form Feast itself stores them in), and the same requested columns are appended, so the numbers are the
ones ``to_arrow`` gives.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame


def _requested(job: Any) -> dict[str, set[str]]:
    """The columns of each on-demand view the request asked for, named as ``to_arrow`` names them."""
    wanted: dict[str, set[str]] = {}
    for ref in job.metadata.features:
        view, _, feature = ref.partition(":")
        for odfv in job.on_demand_feature_views:
            name = odfv.projection.name_to_use()
            if view in (odfv.name, name):
                wanted.setdefault(odfv.name, set()).add(f"{name}__{feature}" if job.full_feature_names else feature)
    return wanted


def _transform(batches: Iterator[pa.RecordBatch], protos: list[bytes], columns: list[list[str]],
               full_names: bool) -> Iterator[pa.RecordBatch]:  # fmt: skip
    import pyarrow as pa
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.protos.feast.core.OnDemandFeatureView_pb2 import OnDemandFeatureView as OnDemandFeatureViewProto

    views = [OnDemandFeatureView.from_proto(OnDemandFeatureViewProto.FromString(p)) for p in protos]
    for batch in batches:
        table = pa.Table.from_batches([batch])
        for view, names in zip(views, columns, strict=True):
            transformed = view.transform_arrow(table, full_names)
            for name in names:
                table = table.append_column(name, transformed[name])
        yield from table.to_batches()


def with_on_demand_features(job: Any) -> DataFrame:
    """``job.to_spark_df()`` plus the columns of the job's on-demand views (see the module docstring)."""
    from feast.type_map import feast_value_type_to_pa
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructType

    frame = job.to_spark_df()
    views = list(job.on_demand_feature_views or [])
    if not views:
        return frame
    requested = _requested(job)
    schema, columns = StructType(list(frame.schema.fields)), []  # a copy: StructType.add changes it in place
    for odfv in views:
        name = odfv.projection.name_to_use()
        names = []
        for field in odfv.features:
            column = f"{name}__{field.name}" if job.full_feature_names else field.name
            if odfv.name not in requested or column in requested[odfv.name]:
                names.append(column)
                schema = schema.add(column, from_arrow_type(feast_value_type_to_pa(field.dtype.to_value_type())))
        columns.append(names)
    protos = [odfv.to_proto().SerializeToString() for odfv in views]
    full_names = job.full_feature_names
    return frame.mapInArrow(lambda batches: _transform(batches, protos, columns, full_names), schema)
