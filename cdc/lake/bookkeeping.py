"""What the lake's tables record about their own progress, read so that maintenance cannot take it away.

Each landing commit records the Kafka offsets, topic ids and landing number of its changelog (or the
dead-letter table) both in its snapshot summary and, in the same metadata commit, as table properties.
Each publish of a base table (merge, bootstrap) records its merged position, truncate floor and
freshness point in the summary of the published commit and then pins them as table properties.
Compaction makes snapshots without these summaries and snapshot expiry removes the old ones, but
neither touches table properties, so a reader takes the newest summary on `main`'s ancestry and,
when maintenance has removed every such snapshot, the pinned property.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyiceberg.table import Table
from pyiceberg.types import LongType

from cdc.ingest import offsets as off
from cdc.lake.catalog import ancestors
from cdc.lake.contract import BASE_BOOKKEEPING, LANDED, LANDED_COLUMN, OFFSETS, TOPIC_IDS


@dataclass(frozen=True)
class Landing:
    """A landing table's record: next offset per topic and partition, topic ids, newest landing number."""

    offsets: off.Offsets = field(default_factory=dict)
    topic_ids: dict[str, str] = field(default_factory=dict)
    landed: int = 0

    def record(self) -> dict[str, str]:
        """Pure: the summary entries and table properties one landing commit writes."""
        out = {OFFSETS: off.encode(self.offsets), LANDED: str(self.landed)}
        if self.topic_ids:
            out[TOPIC_IDS] = off.encode_ids(self.topic_ids)
        return out


def commit(table: Table, rows: pa.Table, record: Landing, summary: dict[str, str] | None = None,
           after_write: Callable[[], None] | None = None) -> None:
    """One landing commit: `rows` (numbered `record.landed` when the table has the column, also when the rows were
    built from a schema read before the column was added) appended in one metadata commit that also sets `record`
    as table properties. `after_write` runs once the data files are written."""
    if _has(table):
        rows = number(rows, record.landed)
    with table.transaction() as tx:
        tx.set_properties(record.record())  # the same metadata commit as the append: maintenance keeps these
        tx.append(rows, snapshot_properties={**record.record(), **(summary or {})})
        if after_write is not None and rows.num_rows:
            after_write()


def _summary(snapshot: Any) -> dict[str, str]:
    return dict(snapshot.summary.additional_properties) if snapshot.summary is not None else {}


def landing(table: Table) -> Landing:
    """The table's landing record: from the newest landing commit on `main`'s ancestry (the truth, also after a
    rollback), else from the table properties that commit set (maintenance expired it, or compacted after it and
    expired it: expiry keeps the newest snapshots, so a landing commit it left is never older than the properties)."""
    for snapshot in ancestors(table):
        found = _summary(snapshot)
        if found.get(OFFSETS):
            ids = found.get(TOPIC_IDS)
            landed = int(found[LANDED]) if found.get(LANDED) else _older_landed(table)
            # a number is never given twice (not even after a rollback: a base may have merged the rolled-back rows)
            return Landing(off.decode(found[OFFSETS]), _ids(ids), max(landed, int(table.properties.get(LANDED) or 0)))
    props = table.properties
    if props.get(OFFSETS):
        return Landing(off.decode(props[OFFSETS]), _ids(props.get(TOPIC_IDS)), int(props.get(LANDED) or 0))
    return Landing()


def _ids(raw: str | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in json.loads(raw).items()} if raw else {}


def _older_landed(table: Table) -> int:
    """A landing number where the newest landing commit predates them (an older lake): the newest recorded."""
    return next((int(_summary(s)[LANDED]) for s in ancestors(table) if _summary(s).get(LANDED)),
                int(table.properties.get(LANDED) or 0))


def value(table: Table, key: str) -> str | None:
    """A base table's bookkeeping value: from the newest summary on `main`'s ancestry that has it, else the pinned
    property (maintenance expired every snapshot that had it). Expiry keeps the newest snapshots, so a summary it
    left is never older than the pin."""
    for snapshot in ancestors(table):
        found = _summary(snapshot).get(key)
        if found:
            return found
    return table.properties.get(key) or None


def unpinned(table: Table, keys: tuple[str, ...] = BASE_BOOKKEEPING) -> dict[str, str]:
    """Pure over the table's metadata: the bookkeeping values whose newest summary differs from the pinned property."""
    out = {}
    for key in keys:
        found = next((_summary(s)[key] for s in ancestors(table) if _summary(s).get(key)), None)
        if found is not None and table.properties.get(key) != found:
            out[key] = found
    return out


def pin(table: Table, keys: tuple[str, ...] = BASE_BOOKKEEPING, exact: bool = False) -> dict[str, str]:
    """Copy the newest summary values into table properties (one metadata commit; none when nothing changed).
    `exact` (a bootstrap's publish, which starts a new history): also remove the pinned values the new history does
    not record, so a reader never falls back to a value of the history it replaced."""
    todo = unpinned(table, keys)
    stale = [k for k in keys if exact and k in table.properties and not any(_summary(s).get(k) for s in ancestors(table))]
    if todo or stale:
        with table.transaction() as tx:
            if todo:
                tx.set_properties(todo)
            if stale:
                tx.remove_properties(*stale)
    return todo


def with_landed_column(changelog: Table) -> Table:
    """The changelog with its landing-number column (added once to a changelog created before it existed: its
    older rows read NULL there, and the first merge after takes them by snapshot, as before)."""
    if _has(changelog):
        return changelog
    with changelog.update_schema() as update:
        update.add_column(LANDED_COLUMN, LongType(), doc="the landing commit that wrote the row")
    return changelog


def _has(table: Table) -> bool:
    return any(f.name == LANDED_COLUMN for f in table.schema().fields)


def number(rows: pa.Table, landed: int) -> pa.Table:
    """Pure: `rows` with every row's landing number set to `landed` (the column added when they lack it)."""
    values = pa.array([landed] * rows.num_rows, type=pa.int64())
    if LANDED_COLUMN not in rows.column_names:
        return rows.append_column(pa.field(LANDED_COLUMN, pa.int64()), values)
    i = rows.column_names.index(LANDED_COLUMN)
    return rows.set_column(i, rows.schema.field(i), values.cast(rows.schema.field(i).type))
