"""Online rows at Redis's speed, with Feast's keys, fields, value encoding and on-demand transformations.

Feast's ``get_online_features`` resolves the request through its registry, builds a response protobuf, runs
python-mode on-demand views on a dict made from it and converts it again: about 20x a raw HGETALL per call.
A serving process asks the same question every time, so :class:`OnlineReader` resolves it once from the registry
as Feast does (each view's features, plus every source feature of a requested on-demand view) and takes the
hash fields from Feast's Redis store, then per call sends one HMGET per symbol in one pipeline (Feast keeps every
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
    """What Feast reads for the request, resolved once: the hash fields, their decoders, the on-demand views."""

    def __init__(self, store: FeatureStore, join_key: str, reads: dict, odfvs: dict, refs: list[str]) -> None:
        from feast.infra.online_stores.helpers import compute_versioned_name

        self.store, self.join_key = store, join_key
        self.online = store._get_provider().online_store
        self.names: list[str] = []
        self.fields: list[bytes] = []
        self.decoders: list[ColumnDecoder] = []
        view_of: dict[str, str] = {}
        versioned = store.config.registry.enable_online_feature_view_versioning
        for table, requested in reads.values():
            names, fields = self.online._generate_hset_keys_for_features(
                table, list(requested), fv_name_override=compute_versioned_name(table, versioned)
            )
            types = {f.name: f.dtype.to_value_type() for f in table.features}
            for name, field in zip(names[:-1], fields[:-1], strict=True):  # the last is the view's _ts field
                self.names.append(name)
                self.fields.append(field)
                self.decoders.append(_decoder(types[name]))
                view_of[name] = table.name
        self.odfvs = []
        for odfv, outputs in odfvs.values():
            types = {f.name: f.dtype.to_value_type() for f in odfv.schema}
            inputs = _odfv_inputs(odfv, refs, [o for o, _ in odfvs.values()], view_of, join_key)
            self.odfvs.append((odfv, inputs, set(outputs), types))
        self.wanted = {join_key, *(ref.split(":", 1)[1] for ref in refs)}
        self._key = lru_cache(maxsize=65536)(self._feast_key)  # a serving process reads the same symbols all day

    def _feast_key(self, symbol: str) -> bytes:
        """Feast's Redis key of one entity."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        entity = EntityKey(join_keys=[self.join_key], entity_values=[Value(string_val=symbol)])
        return self.online._generate_redis_keys_for_entities(self.store.config, [entity])[0]

    @classmethod
    def of(cls, store: FeatureStore, features: list[str] | FeatureService) -> _RedisPlan | None:
        """The plan, or None when Feast must read: not Redis, or a request outside what this path reproduces
        (aliased projections, views keyed otherwise than by symbol, names repeated across views, on-demand
        views other than plain python-mode ones, names Feast would refuse)."""
        from feast.infra.online_stores.redis import RedisOnlineStore

        if not isinstance(store._get_provider().online_store, RedisOnlineStore):
            return None
        if isinstance(features, list):
            refs = list(features)
        elif any(p.name_alias or p.join_key_map for p in features.feature_view_projections):
            return None
        else:
            refs = [f"{p.name}:{f.name}" for p in features.feature_view_projections for f in p.features]
        views = {view.name: view for view in store.list_feature_views()}
        on_demand = {view.name: view for view in store.list_on_demand_feature_views()}
        reads: dict[str, tuple[Any, list[str]]] = {}
        odfvs: dict[str, tuple[Any, list[str]]] = {}

        def read(view: str, feature: str) -> None:
            reads.setdefault(view, (views[view], []))[1].append(feature)

        for ref in refs:
            view, _, feature = ref.partition(":")
            if view in on_demand:
                odfvs.setdefault(view, (on_demand[view], []))[1].append(feature)
                for projection in on_demand[view].source_feature_view_projections.values():
                    if projection.name not in views:
                        return None  # a request source or another on-demand view
                    for field in projection.features:
                        read(projection.name, field.name)
            elif view in views:
                read(view, feature)
            else:
                return None  # Feast names the unknown view
        reads = {v: (table, list(dict.fromkeys(names))) for v, (table, names) in reads.items()}
        keys = {c.name for table, _ in reads.values() for c in table.entity_columns}
        names = [n for _, requested in reads.values() for n in requested]
        plain = all(
            o.mode == "python" and not o.aggregations and not o.write_to_online_store for o, _ in odfvs.values()
        )
        if keys != {"symbol"} or len(set(names)) != len(names) or not plain:
            return None
        return cls(store, "symbol", reads, odfvs, refs)

    def read(self, symbols: list[str]) -> list[dict[str, Any]]:
        if not symbols:
            return []
        keys = [self._key(s) for s in symbols]
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
