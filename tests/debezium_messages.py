"""Debezium MariaDB messages as Kafka Connect's JsonConverter writes them (schemas.enable=true).

Shared by the decoder's unit tests and the model-based merge test.
"""

from __future__ import annotations

import json
from typing import Any

from cdc.events.model import KafkaCoordinates, TableId

TOPIC = "cdc.probe.t"
COORDS = KafkaCoordinates(TOPIC, 0, 42)
TABLE = TableId("probe", "t")
DECIMAL = "org.apache.kafka.connect.data.Decimal"


# ---- fixture builders ------------------------------------------------------------------------


def field(name: str, connect_type: str, *, optional: bool = True, semantic: str | None = None, **extra: Any) -> dict:
    f: dict[str, Any] = {"type": connect_type, "optional": optional}
    if semantic is not None:
        f["name"] = semantic
    f.update(extra)
    f["field"] = name
    return f


def source_field(name: str, connect_type: str, source_type: str, *, length: int | None = None, scale: int | None = None,
                 parameters: dict | None = None, **extra: Any) -> dict:
    """A field as Debezium writes it with `column.propagate.source.type=.*` (measured on MariaDB 10.11)."""
    params: dict[str, str] = dict(parameters or {})
    params["__debezium.source.column.type"] = source_type
    if length is not None:
        params["__debezium.source.column.length"] = str(length)
    if scale is not None:
        params["__debezium.source.column.scale"] = str(scale)
    params["__debezium.source.column.name"] = name
    return field(name, connect_type, parameters=params, **extra)


def decimal_field(name: str, precision: int, scale: int) -> dict:
    params = {"scale": str(scale), "connect.decimal.precision": str(precision)}
    return field(name, "bytes", semantic=DECIMAL, version=1, parameters=params)


ID = field("id", "int32", optional=False)

ROW_FIELDS = [
    ID,
    decimal_field("d", 10, 2),
    field("ts", "string", semantic="io.debezium.time.ZonedTimestamp", version=1),
    field("dt", "int64", semantic="io.debezium.time.MicroTimestamp", version=1),
    field("b", "boolean"),
    field("v", "string"),
]

SOURCE_FIELDS = [
    field("version", "string", optional=False),
    field("connector", "string", optional=False),
    field("name", "string", optional=False),
    field("ts_ms", "int64", optional=False),
    field(
        "snapshot",
        "string",
        semantic="io.debezium.data.Enum",
        version=1,
        parameters={"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},
        default="false",
    ),
    field("db", "string", optional=False),
    field("sequence", "string"),
    field("ts_us", "int64"),
    field("table", "string"),
    field("server_id", "int64", optional=False),
    field("gtid", "string"),
    field("file", "string", optional=False),
    field("pos", "int64", optional=False),
    field("row", "int32", optional=False),
    field("thread", "int64"),
    field("query", "string"),
]

TRANSACTION_FIELD = {
    "type": "struct",
    "fields": [
        field("id", "string", optional=False),
        field("total_order", "int64", optional=False),
        field("data_collection_order", "int64", optional=False),
    ],
    "optional": True,
    "name": "event.block",
    "version": 1,
    "field": "transaction",
}


def value_schema(row_fields: list[dict], db: str = "probe", table: str = "t") -> dict:
    def image(which: str) -> dict:
        return {"type": "struct", "fields": row_fields, "optional": True, "name": f"cdc.{db}.{table}.Value", "field": which}

    return {
        "type": "struct",
        "fields": [
            image("before"),
            image("after"),
            {
                "type": "struct",
                "fields": SOURCE_FIELDS,
                "optional": False,
                "name": "io.debezium.connector.mariadb.Source",
                "field": "source",
            },
            TRANSACTION_FIELD,
            field("op", "string", optional=False),
            field("ts_ms", "int64"),
        ],
        "optional": False,
        "name": f"cdc.{db}.{table}.Envelope",
        "version": 2,
    }


def source(
    *,
    file: str = "mysql-bin.000001",
    pos: int = 2277,
    row: int = 0,
    snapshot: str | None = None,
    db: str = "probe",
    table: str = "t",
) -> dict:
    return {
        "version": "3.5.0.Final",
        "connector": "mariadb",
        "name": "cdc",
        "ts_ms": 1795619313000,
        "snapshot": snapshot,
        "db": db,
        "sequence": None,
        "ts_us": 1795619313000000,
        "table": table,
        "server_id": 1,
        "gtid": "0-1-10",
        "file": file,
        "pos": pos,
        "row": row,
        "thread": None,
        "query": None,
    }


def payload(op: str, *, before: dict | None = None, after: dict | None = None, src: dict | None = None) -> dict:
    return {
        "before": before,
        "after": after,
        "source": src if src is not None else source(),
        "transaction": None,
        "op": op,
        "ts_ms": 1795619313879,
    }


def envelope(schema: Any, body: Any, *, ensure_ascii: bool = True, indent: int | None = None) -> bytes:
    """Bytes as JsonConverter writes them (compact; `indent` makes a pretty-printed variant)."""
    separators = None if indent else (",", ":")
    doc = {"schema": schema, "payload": body}
    return json.dumps(doc, separators=separators, ensure_ascii=ensure_ascii, indent=indent).encode()


def value(body: dict, row_fields: list[dict] = ROW_FIELDS) -> bytes:
    return envelope(value_schema(row_fields), body)


def key(fields: list[dict], body: Any, name: str = "cdc.probe.t.Key") -> bytes:
    return envelope({"type": "struct", "fields": fields, "optional": False, "name": name}, body)


