"""The dead-letter table `cdc_dlq.events`: every message that could not be decoded, kept whole."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import BinaryType, IntegerType, LongType, NestedField, StringType, TimestamptzType

from cdc.events.model import DecodeFailure

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
    return catalog.create_table_if_not_exists(TABLE, schema=SCHEMA)


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
        }
        for f in failures
    ]
    return pa.Table.from_pylist(rows, schema=schema)


def append(catalog: Catalog, failures: Sequence[DecodeFailure]) -> None:
    table = dlq_table(catalog)
    arrow_schema = pa.schema([pa.field(f.name, f.type, nullable=True) for f in table.schema().as_arrow()])
    table.append(to_arrow(failures, dt.datetime.now(dt.UTC), arrow_schema))
    log.info("dead-lettered %d messages into %s", len(failures), ".".join(TABLE))


def count(catalog: Catalog) -> int:
    try:
        table = catalog.load_table(TABLE)
    except NoSuchTableError:
        return 0
    snapshot = table.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary.additional_properties.get("total-records", "0"))
