"""Change records -> Arrow rows in the changelog table's schema (the commit is `cdc.ingest.landing`'s)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

from cdc.events.model import ChangeEvent
from cdc.lake import schema as ls

log = logging.getLogger(__name__)


def to_arrow(events: Sequence[ChangeEvent], target: pa.Schema, ingested_at: dt.datetime) -> pa.Table:
    """Pure: column-wise Arrow table in the changelog table's schema."""
    columns: dict[str, list[Any]] = {name: [] for name in target.names}
    meta = ls.RESERVED
    source_names = [n for n in target.names if n not in meta]
    # a keyless table's update lands as two rows at one position: its before-image as a `d`, then the `u`
    rows = [(op, image, ev) for ev in events
            for op, image in ((("d", ev.before),) if ev.before is not None else ()) + ((ev.op.value, ev.values),)]
    for op, values, ev in rows:
        for name in source_names:
            columns[name].append(values.get(name))
        c = ev.coordinates
        columns[ls.OP].append(op)
        columns[ls.SEQ].append(Decimal(ev.seq))
        columns[ls.SOURCE_TS].append(dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ev.source_ts_us))
        columns[ls.INGESTED_AT].append(ingested_at)
        columns[ls.KAFKA_TOPIC].append(c.topic)
        columns[ls.KAFKA_PARTITION].append(c.partition)
        columns[ls.KAFKA_OFFSET].append(c.offset)
        if ls.LANDED_COLUMN in columns:
            columns[ls.LANDED_COLUMN].append(None)  # the commit numbers its rows (`cdc.lake.bookkeeping.number`)
    arrays = [pa.array(columns[f.name], type=f.type) for f in target]
    return pa.Table.from_arrays(arrays, schema=target)


def plain_arrow(schema: pa.Schema) -> pa.Schema:
    """The table's Arrow schema without field metadata (pyiceberg adds field ids)."""
    return pa.schema([pa.field(f.name, f.type, nullable=True) for f in schema])
