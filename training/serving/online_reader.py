"""Online rows at Redis's speed, with Feast's keys, fields, value encoding and on-demand transformations.

Feast's ``get_online_features`` resolves the request through its registry, builds a response protobuf, runs
python-mode on-demand views on a dict made from it and converts it again: about 20x a raw HGETALL per call.
A serving process asks the same question every time, so :class:`OnlineReader` asks Feast once how to read it
(views, fields, on-demand views), then per call sends one HMGET per symbol in one pipeline (Feast keeps every
view of an entity in one hash), decodes only the fields read and runs the on-demand views' own transformations.
Its rows are exactly ``get_online_features(...).to_dict()``'s. Any other online store (SQLite in the embedded
profile) or request shape (several join keys, aggregations, pandas-mode views) reads through Feast itself.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

ColumnDecoder = Callable[[list[bytes | None]], list[Any]]
VECTOR_FROM = 8  # values in a column from which one numpy pass beats decoding them one by one


class OnlineReader:
    """``read_many(symbols)``: the online rows of ``features`` (refs or a feature service), one dict per symbol."""

    def __init__(self, store: FeatureStore, features: list[str] | FeatureService) -> None:
        self.store, self.features = store, features
        self._plan = _RedisPlan.of(store, features)

    @property
    def fast(self) -> bool:
        """True when reads skip Feast's request path (a Redis online store and a request it can plan)."""
        return self._plan is not None

    def read_many(self, symbols: Sequence[str]) -> list[dict[str, Any]]:
        if self._plan is not None:
            return self._plan.read(list(symbols))
        response = self.store.get_online_features(self.features, [{"symbol": s} for s in symbols]).to_dict()
        return [{name: values[i] for name, values in response.items()} for i in range(len(symbols))]


class _RedisPlan:
    """What Feast would read for the request, resolved once: the hash fields, their decoders, the on-demand views."""

    def __init__(self, store: FeatureStore, join_key: str, plan: tuple) -> None:
        from feast.infra.online_stores.redis import _versioned_fv_name

        _, grouped_refs, _, odfvs, feature_refs, wanted, _ = plan
        self.store, self.join_key = store, join_key
        self.online = store._get_provider().online_store
        self.names: list[str] = []
        self.fields: list[bytes] = []
        self.decoders: list[ColumnDecoder] = []
        view_of: dict[str, str] = {}
        for table, requested in grouped_refs:
            names, fields = self.online._generate_hset_keys_for_features(
                table, list(requested), fv_name_override=_versioned_fv_name(table, store.config)
            )
            types = {f.name: f.dtype.to_value_type() for f in table.features}
            for name, field in zip(names[:-1], fields[:-1], strict=True):  # the last is the view's _ts field
                self.names.append(name)
                self.fields.append(field)
                self.decoders.append(_decoder(types[name]))
                view_of[name] = table.projection.name
        self.odfvs = []
        for odfv in odfvs:
            name = odfv.projection.name_alias or odfv.name
            outputs = {r.split(":", 1)[1] for r in feature_refs if r.split(":", 1)[0] == name}
            types = {f.name: f.dtype.to_value_type() for f in odfv.schema}
            self.odfvs.append((odfv, _odfv_inputs(odfv, feature_refs, odfvs, view_of, join_key), outputs, types))
        self.wanted = wanted

    @classmethod
    def of(cls, store: FeatureStore, features: list[str] | FeatureService) -> _RedisPlan | None:
        """The plan, or None when Feast must read: not Redis, or a request outside what this path reproduces."""
        from feast import utils
        from feast.infra.online_stores.redis import RedisOnlineStore

        if not isinstance(store._get_provider().online_store, RedisOnlineStore):
            return None
        plan = utils._prepare_entities_to_read_from_online_store(
            registry=store.registry,
            project=store.project,
            features=features,
            entity_values={"symbol": ["__PLAN__"]},
            full_feature_names=False,
            native_entity_values=True,
        )
        _, grouped_refs, join_keys, odfvs, _, _, _ = plan
        keys = {join_keys[e] for table, _ in grouped_refs for e in table.entities}
        names = [n for _, requested in grouped_refs for n in requested]
        plain = all(o.mode == "python" and not o.aggregations and not o.write_to_online_store for o in odfvs)
        if keys != {"symbol"} or len(set(names)) != len(names) or not plain:
            return None
        return cls(store, "symbol", plan)

    def read(self, symbols: list[str]) -> list[dict[str, Any]]:
        if not symbols:
            return []
        version = self.store.config.entity_key_serialization_version
        keys = [_redis_key(self.store.project, self.join_key, s, version) for s in symbols]
        replies = self.online._read_hash_fields(self.store.config, [(key, self.fields) for key in keys])
        columns: dict[str, list[Any]] = {self.join_key: symbols}
        for position, (name, decode) in enumerate(zip(self.names, self.decoders, strict=True)):
            columns[name] = decode([reply[position] for reply in replies])
        for odfv, inputs, outputs, types in self.odfvs:
            out = odfv.transform_dict({name: columns[name] for name in inputs})
            for name in [n for n in out if n in outputs]:
                values = out[name]
                columns[name] = as_served(values if isinstance(values, list) else [values], types.get(name))
        served = [name for name in columns if name in self.wanted]
        return [{name: columns[name][i] for name in served} for i in range(len(symbols))]


def _odfv_inputs(odfv, feature_refs: list[str], odfvs: list, view_of: dict[str, str], join_key: str) -> list[str]:
    """The columns Feast hands an on-demand view: the join key and every feature read, minus the features of
    views it does not declare as sources (Feast 0.67's ``_augment_response_with_on_demand_transforms``)."""
    declared = {p.name for p in odfv.source_feature_view_projections.values()}
    odfv_names = {o.projection.name_alias or o.name for o in odfvs}
    undeclared = {r.split(":", 1)[1] for r in feature_refs if r.split(":", 1)[0] not in odfv_names | declared}
    for other in odfvs:
        for projection in other.source_feature_view_projections.values():
            if projection.name not in declared:
                undeclared.update(f.name for f in projection.features)
    return [join_key, *(name for name in view_of if name not in undeclared)]


@lru_cache(maxsize=65536)
def _redis_key(project: str, join_key: str, symbol: str, version: int) -> bytes:
    """Feast's Redis key of one entity (cached: a serving process asks for the same symbols all day)."""
    from feast.infra.online_stores.helpers import _redis_key as feast_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    entity = EntityKey(join_keys=[join_key], entity_values=[Value(string_val=symbol)])
    return feast_key(project, entity, entity_key_serialization_version=version)


@lru_cache(maxsize=4096)
def feast_decoded(raw: bytes | None, value_type: int | None = None) -> Any:
    """A stored value as ``OnlineResponse.to_dict`` gives it: Feast's own protobuf and type map (``value_type``: a
    ValueType's number; cached: bar stamps and row versions repeat across symbols)."""
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type
    from feast.value_type import ValueType

    if not raw:
        return None
    return feast_value_type_to_python_type(Value.FromString(raw), None if value_type is None else ValueType(value_type))


@lru_cache(maxsize=1)
def _double_layout() -> tuple[bytes, int]:
    """The bytes before a double's 8 and the whole length, as Feast's protobuf writes a ``double_val``."""
    from feast.protos.feast.types.Value_pb2 import Value

    probe = Value(double_val=1.5).SerializeToString()
    assert probe.endswith(struct.pack("<d", 1.5)), probe
    return probe[:-8], len(probe)


_unpack_double = struct.Struct("<d").unpack_from


def decode_double(raw: bytes | None) -> Any:
    """A Float64 field: the IEEE double itself when the value is a bare ``double_val`` (what materialize writes);
    anything else (missing, unknown fields) through :func:`feast_decoded`."""
    prefix, length = _double_layout()
    if raw is not None and len(raw) == length and raw.startswith(prefix):
        return _unpack_double(raw, len(prefix))[0]
    return feast_decoded(raw)


def decode_doubles(raws: list[bytes | None]) -> list[Any]:
    """A Float64 column: one numpy pass when every value is a bare ``double_val``, else value by value."""
    import numpy as np

    prefix, length = _double_layout()
    if len(raws) >= VECTOR_FROM:
        try:
            whole = set(map(len, raws)) == {length}
        except TypeError:  # a missing value (None)
            whole = False
        if whole:
            layout = np.dtype([("prefix", f"S{len(prefix)}"), ("value", "<f8")])
            records = np.frombuffer(b"".join(raws), dtype=layout)
            if (records["prefix"] == prefix).all():
                return records["value"].tolist()
    return [decode_double(raw) for raw in raws]


def _decoder(value_type: Any) -> ColumnDecoder:
    from feast.value_type import ValueType

    if value_type == ValueType.DOUBLE:
        return decode_doubles
    number = value_type.value  # an int hashes in C: the cache's key is looked up once per value
    return lambda raws: [feast_decoded(raw, number) for raw in raws]


def as_served(values: list[Any], value_type: Any) -> list[Any]:
    """On-demand outputs as Feast serves them after its protobuf round trip (a Float64 NaN becomes None).

    Python floats (and None) of a Float64 output take a shortcut; anything else goes through Feast's own
    conversion.
    """
    from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
    from feast.value_type import ValueType

    if value_type == ValueType.DOUBLE and all(v is None or type(v) is float for v in values):
        return [None if v is None or v != v else v for v in values]
    return [feast_value_type_to_python_type(p) for p in python_values_to_proto_values(values, value_type)]
