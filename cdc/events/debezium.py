"""Decode Debezium MariaDB/MySQL messages (JSON converter, schemas embedded) into change records.

Pure: bytes and Kafka coordinates in, a `ChangeEvent`, a `Skip` or a `DecodeFailure` out. It never
raises on bad input and never returns None. The embedded Connect schema is what keeps values exact
(decimal scale, temporal units); it is parsed once per distinct schema and cached.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from cdc.errors import DecodeError
from cdc.events.connect_types import Converter, field_column
from cdc.events.model import (
    ChangeEvent,
    Column,
    Decoded,
    DecodeFailure,
    KafkaCoordinates,
    Op,
    Skip,
    TableId,
    TableSchema,
)
from cdc.events.position import SNAPSHOT, STREAM, BinlogPosition, binlog_file_index

_SPLIT = b',"payload":'
_OPS = {op.value: op for op in Op}


@dataclass(frozen=True, slots=True)
class _RowCodec:
    schema: TableSchema
    converters: tuple[tuple[str, Converter], ...]

    def convert(self, row: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, convert in self.converters:
            raw = row.get(name)
            if raw is None:
                out[name] = None
                continue
            try:
                out[name] = convert(raw)
            except DecodeError as exc:
                raise DecodeError(f"column {name!r}: {exc}") from exc
        return out


def _row_fields(value_schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    for f in value_schema.get("fields", ()):
        if f.get("field") in ("after", "before") and f.get("type") == "struct":
            fields = f.get("fields")
            if isinstance(fields, list):
                return fields
    raise DecodeError("value schema has no before/after struct")


def _key_names(key_schema: Mapping[str, Any] | None) -> tuple[str, ...]:
    if not key_schema:
        return ()
    fields = key_schema.get("fields")
    if not isinstance(fields, list):
        raise DecodeError("key schema is not a struct")
    names: list[str] = []
    for f in fields:
        name = f.get("field") if isinstance(f, Mapping) else None
        if not isinstance(name, str) or not name:
            raise DecodeError("a key schema field has no name")
        names.append(name)
    return tuple(names)


@lru_cache(maxsize=1024)
def _codec(value_schema_json: bytes, key_names: tuple[str, ...]) -> _RowCodec:
    value_schema = orjson.loads(value_schema_json)
    columns: list[Column] = []
    converters: list[tuple[str, Converter]] = []
    for f in _row_fields(value_schema):
        column, convert = field_column(f)
        columns.append(column)
        converters.append((column.name, convert))
    names = {c.name for c in columns}
    missing = [k for k in key_names if k not in names]
    if missing:
        raise DecodeError(f"key columns {missing} are not in the row schema")
    return _RowCodec(TableSchema(tuple(columns), key_names), tuple(converters))


def _split_envelope(raw: bytes) -> tuple[bytes, Any]:
    """Split `{"schema":...,"payload":...}` so the schema part can be cached by its bytes."""
    if raw.startswith(b'{"schema":') and raw.endswith(b"}"):
        cut = raw.find(_SPLIT)
        if cut > 0:
            try:
                return raw[len(b'{"schema":') : cut], orjson.loads(raw[cut + len(_SPLIT) : -1])
            except orjson.JSONDecodeError:
                pass
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or "schema" not in doc or "payload" not in doc:
        raise DecodeError("not a Connect JSON envelope with schema and payload (schemas.enable=true)")
    return orjson.dumps(doc["schema"]), doc["payload"]


def _parse_key(key: bytes | None) -> tuple[tuple[str, ...], Mapping[str, Any] | None]:
    if not key:
        return (), None
    try:
        doc = orjson.loads(key)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"key is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or "payload" not in doc:
        raise DecodeError("key is not a Connect JSON envelope")
    payload = doc["payload"]
    return _key_names(doc.get("schema")), payload if isinstance(payload, dict) else None


def _position(source: Mapping[str, Any]) -> int:
    snapshot = str(source.get("snapshot", "false"))
    # every row of an initial snapshot carries the snapshot's one position; it ranks below streaming
    phase = SNAPSHOT if snapshot in ("true", "first", "first_in_data_collection", "last", "last_in_data_collection") else STREAM
    try:
        file_index = binlog_file_index(str(source["file"]))
        pos = int(source["pos"])
        row = int(source.get("row") or 0)
        return BinlogPosition(phase, file_index, pos, row).pack()
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"source block has no usable binlog position: {exc}") from exc


def _source_ts_us(source: Mapping[str, Any], payload: Mapping[str, Any]) -> int:
    if isinstance(source.get("ts_us"), int):
        return int(source["ts_us"])
    if isinstance(source.get("ts_ms"), int):
        return int(source["ts_ms"]) * 1000
    if isinstance(payload.get("ts_ms"), int):
        return int(payload["ts_ms"]) * 1000
    raise DecodeError("no source timestamp")


def decode(
    key: bytes | None,
    value: bytes | None,
    coordinates: KafkaCoordinates,
    table_of_topic: Callable[[str], TableId | None] | None = None,
) -> Decoded:
    """Decode one Debezium message. Never raises: failures come back as `DecodeFailure`."""
    table: TableId | None = None
    try:
        if value is None:
            return Skip("tombstone", coordinates)
        schema_bytes, payload = _split_envelope(value)
        if not isinstance(payload, dict):
            raise DecodeError("payload is not an object")
        source = payload.get("source")
        if not isinstance(source, dict):
            raise DecodeError("payload has no source block")
        db, tbl = source.get("db"), source.get("table")
        if not isinstance(db, str) or not isinstance(tbl, str) or not db or not tbl:
            raise DecodeError("source block names no database and table")
        table = TableId(db, tbl)
        if table_of_topic is not None:
            expected = table_of_topic(coordinates.topic)
            if expected is not None and expected != table:
                raise DecodeError(f"message for {table} on the topic of {expected}")
        op = _OPS.get(str(payload.get("op")))
        if op is None:
            raise DecodeError(f"unknown op code {payload.get('op')!r}")
        key_names, key_payload = _parse_key(key)
        codec = _codec(schema_bytes, key_names)
        if op is Op.TRUNCATE:
            row: Mapping[str, Any] = {}
        else:
            image = payload.get("before" if op is Op.DELETE else "after")
            if not isinstance(image, dict):
                raise DecodeError(f"op {op.value!r} without its {'before' if op is Op.DELETE else 'after'} image")
            row = image
        values = codec.convert(row)
        before = None
        if not key_names and op is Op.UPDATE:
            # a table without a key (none at the source, none declared): the lake keeps it as a multiset, where
            # an update removes one row equal to its before-image (binlog_row_image=FULL gives every column)
            image = payload.get("before")
            if not isinstance(image, dict):
                raise DecodeError(f"update of {table}, a table without a key, has no before-image (binlog_row_image=FULL?)")
            before = codec.convert(image)
        if key_payload is not None and op is not Op.TRUNCATE:
            for k in key_names:
                if values.get(k) is None:
                    raise DecodeError(f"key column {k!r} is null")
        return ChangeEvent(
            table=table,
            op=op,
            seq=_position(source),
            source_ts_us=_source_ts_us(source, payload),
            values=values,
            schema=codec.schema,
            coordinates=coordinates,
            before=before,
        )
    except DecodeError as exc:
        return DecodeFailure(type(exc).__name__, str(exc), key, value, coordinates, table)
    except (RecursionError, MemoryError, OverflowError, AttributeError, LookupError, TypeError, ValueError) as exc:
        return DecodeFailure(type(exc).__name__, str(exc), key, value, coordinates, table)
