"""The fast online read's decoding equals Feast's own on any value (no services needed: the unit tier).

The read itself against a real online store is tested in tests/test_online.py.
Feast is imported here, not in the tests: its import takes seconds, beyond hypothesis's deadline.
"""

from __future__ import annotations

import math

from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.value_type import ValueType
from hypothesis import given
from hypothesis import strategies as st

from training.serving.online_reader import VECTOR_FROM, as_served, decode_double, decode_doubles, feast_decoded

values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b and str(a) == str(b)  # str tells -0.0 from 0.0


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_stored_double_decodes_as_feasts_protobuf_decodes_it(value):
    raw = Value(double_val=value).SerializeToString()
    assert same(decode_double(raw), feast_decoded(raw))


stored = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: Value(double_val=v).SerializeToString()),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda v: Value(int64_val=v).SerializeToString()),
    st.sampled_from([None, b""]),
)


@given(st.lists(stored, max_size=3 * VECTOR_FROM))
def test_a_column_decodes_as_its_values_one_by_one(column):
    """The numpy pass over a column of bare doubles, and its fallback on anything else, give Feast's values."""
    decoded = decode_doubles(column)
    assert len(decoded) == len(column)
    assert all(same(a, feast_decoded(raw)) for a, raw in zip(decoded, column, strict=True))


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=VECTOR_FROM, max_size=3 * VECTOR_FROM))
def test_a_column_of_doubles_takes_the_numpy_pass_with_feasts_values(numbers):
    column = [Value(double_val=v).SerializeToString() for v in numbers]
    assert all(same(a, feast_decoded(raw)) for a, raw in zip(decode_doubles(column), column, strict=True))


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_missing_empty_and_other_values_go_through_feast(number):
    assert decode_double(None) is None and decode_double(b"") is None  # a missing field, an empty value
    other = Value(int64_val=number).SerializeToString()  # not a bare double: decoded by Feast, not misread
    assert decode_double(other) == number == feast_decoded(other)


@given(st.lists(values, min_size=1, max_size=20))
def test_on_demand_outputs_are_served_as_after_feasts_protobuf_round_trip(column):
    feasts = [feast_value_type_to_python_type(p) for p in python_values_to_proto_values(column, ValueType.DOUBLE)]
    served = as_served(column, ValueType.DOUBLE)
    assert len(served) == len(feasts) and all(same(a, b) for a, b in zip(served, feasts, strict=True))
    assert all(v is None or not math.isnan(v) for v in served)  # a NaN output is served as missing
