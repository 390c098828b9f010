"""The dead-letter table `cdc_dlq.events`: every message that could not be decoded, kept whole."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from collections.abc import Sequence

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.expressions import And, EqualTo, In, Or
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import BinaryType, IntegerType, LongType, NestedField, StringType, TimestamptzType

from cdc.events.model import DecodeFailure
from cdc.ingest.commit import landed_offsets
from cdc.lake.contract import LANDING_TABLE_PROPERTIES

log = logging.getLogger(__name__)

NAMESPACE = "cdc_dlq"
TABLE = (NAMESPACE, "events")

SCHEMA = Schema(
    NestedField(1, "topic", StringType(), required=False),
    NestedField(2, "partition", IntegerType(), required=False),
    NestedField(3, "offset", LongType(), required=False),
    NestedField(4, "source_table", StringType(), required=False),
    NestedField(5, "error_class", StringType(), required=False),
    NestedField(6, "message", StringType(), required=False),
    NestedField(7, "key", BinaryType(), required=False),
    NestedField(8, "value", BinaryType(), required=False),
    NestedField(9, "first_seen", TimestamptzType(), required=False),
    NestedField(10, "headers", StringType(), required=False),  # JSON: [[key, base64 value], ...]
)


def dlq_table(catalog: Catalog) -> Table:
    try:
        return catalog.load_table(TABLE)
    except NoSuchTableError:
        pass
    try:
        catalog.create_namespace(NAMESPACE)
    except NamespaceAlreadyExistsError:
        pass
    return catalog.create_table_if_not_exists(TABLE, schema=SCHEMA, properties=LANDING_TABLE_PROPERTIES)


def to_arrow(failures: Sequence[DecodeFailure], seen: dt.datetime, schema: pa.Schema) -> pa.Table:
    rows = [
        {
            "topic": f.coordinates.topic,
            "partition": f.coordinates.partition,
            "offset": f.coordinates.offset,
            "source_table": str(f.table) if f.table else None,
            "error_class": f.error,
            "message": f.message,
            "key": f.key,
            "value": f.value,
            "first_seen": seen,
            "headers": json.dumps([[k, base64.b64encode(v).decode()] for k, v in f.headers]) if f.headers else None,
        }
        for f in failures
    ]
    return pa.Table.from_pylist(rows, schema=schema)


def committed(catalog: Catalog) -> dict[str, dict[int, int]]:
    """The next offsets the dead-letter commits recorded, per topic and partition."""
    try:
        return landed_offsets(catalog.load_table(TABLE))
    except NoSuchTableError:
        return {}


def count(catalog: Catalog) -> int:
    try:
        table = catalog.load_table(TABLE)
    except NoSuchTableError:
        return 0
    snapshot = table.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary.additional_properties.get("total-records", "0"))


def rows(catalog: Catalog, limit: int | None = None) -> list[dict[str, object]]:
    """Dead letters, oldest first (without their raw bytes)."""
    try:
        table = catalog.load_table(TABLE)
    except NoSuchTableError:
        return []
    fields = ("topic", "partition", "offset", "source_table", "error_class", "message", "first_seen")
    found = table.scan(selected_fields=fields).to_arrow().sort_by([("first_seen", "ascending"), ("offset", "ascending")])
    picked: list[dict[str, object]] = found.slice(0, limit).to_pylist() if limit else found.to_pylist()
    return picked


def raw_rows(catalog: Catalog) -> list[dict[str, object]]:
    try:
        found: list[dict[str, object]] = catalog.load_table(TABLE).scan().to_arrow().to_pylist()
    except NoSuchTableError:
        return []
    return found


def remove(catalog: Catalog, coordinates: Sequence[tuple[str, int, int]]) -> None:
    """Delete dead letters by their Kafka coordinates (after a successful replay)."""
    if not coordinates:
        return
    by_part: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in coordinates:
        by_part.setdefault((topic, partition), []).append(offset)
    # pyiceberg's predicates are pydantic models whose runtime signature mypy cannot see
    clauses = [
        And(EqualTo("topic", topic), EqualTo("partition", partition), In("offset", offsets))  # type: ignore[call-arg, arg-type]
        for (topic, partition), offsets in sorted(by_part.items())
    ]
    condition = clauses[0] if len(clauses) == 1 else Or(*clauses)
    catalog.load_table(TABLE).delete(delete_filter=condition)
