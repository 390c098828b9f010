"""The capture rules, in one place: which source tables are captured, and topic <-> table.

Debezium names a table's topic `<prefix>.<db>.<table>` after replacing every character outside
`[A-Za-z0-9._-]` with `_`, so the topic does not name the table: `a b` and `a_b` share a topic, and a
dot in a name adds parts. The table is always taken from the message's `source` block; the topic
is only derived from the table (to find the partitions a table's offsets are recorded for).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pyiceberg.catalog import Catalog

from cdc.config import Settings
from cdc.events.model import ChangeEvent, TableId, TableSchema
from cdc.lake.catalog import captured_namespaces

MARKER_DB = "cdc_marker"  # `connectors.wait_captured`'s marker table lives here; always captured
_INVALID_TOPIC_CHAR = re.compile(r"[^A-Za-z0-9._-]")
MAX_NAME = 255  # Iceberg catalogs and Spark take longer names badly; MariaDB allows 64


def sanitize(name: str) -> str:
    """Debezium's topic-name sanitising: characters outside `[A-Za-z0-9._-]` become `_`."""
    return _INVALID_TOPIC_CHAR.sub("_", name)


def included_databases(settings: Settings, added: Sequence[str] = ()) -> list[str]:
    """The connector's include list: settings, databases added by `cdc bootstrap`, the marker.

    Empty means every non-system database (the default), and then nothing needs adding.
    """
    if not settings.connect.include_databases:
        return []
    return sorted({*settings.connect.include_databases, *added, MARKER_DB})


@dataclass(frozen=True)
class CaptureRules:
    """Which tables are captured (include/exclude databases) and how their topics are named."""

    prefix: str
    include: frozenset[str] = frozenset()  # empty: every database not excluded
    exclude: frozenset[str] = frozenset()
    excluded_columns: tuple[tuple[TableId, frozenset[str]], ...] = ()  # per table, columns that never land

    def columns_left_out(self, table: TableId) -> frozenset[str]:
        return next((cols for t, cols in self.excluded_columns if t == table), frozenset())

    @property
    def pattern(self) -> str:
        """The subscription: every `<prefix>.<db>.<table>` topic (not `<prefix>.transaction`)."""
        return "^" + re.escape(self.prefix) + r"\..+\..+$"

    def topic(self, table: TableId) -> str:
        return f"{self.prefix}.{sanitize(table.db)}.{sanitize(table.table)}"

    def is_data_topic(self, topic: str) -> bool:
        return re.match(self.pattern, topic) is not None

    def captured(self, table: TableId) -> bool:
        if self.include and table.db not in self.include:
            return False
        return table.db not in self.exclude

    @classmethod
    def from_settings(cls, settings: Settings, catalog: Catalog | None = None) -> CaptureRules:
        c = settings.connect
        added = captured_namespaces(catalog) if catalog is not None and c.include_databases else []
        excluded = tuple((table_id(name), frozenset(o.exclude_columns)) for name, o in sorted(settings.tables.items())
                         if o.exclude_columns)
        return cls(c.topic_prefix, frozenset(included_databases(settings, added)), frozenset(c.exclude_databases), excluded)


def table_id(name: str) -> TableId:
    """`db.table` from settings keys (the first dot separates: database names with a dot cannot be landed)."""
    db, _, table = name.partition(".")
    return TableId(db, table)


def without_columns(event: ChangeEvent, columns: frozenset[str]) -> ChangeEvent:
    """Pure: the change with `columns` left out of its schema and values (excluded columns never land)."""
    if not columns.intersection(event.schema.names):
        return event
    schema = TableSchema(tuple(c for c in event.schema.columns if c.name not in columns), event.schema.key)
    values = {k: v for k, v in event.values.items() if k not in columns}
    return dataclasses.replace(event, schema=schema, values=values)


def unsupported_name(table: TableId) -> str | None:
    """Pure: why a source table's name cannot become lake tables, or None when it can."""
    for what, name in (("database", table.db), ("table", table.table)):
        if not name.strip():
            return f"the {what} name {name!r} is blank"
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
            return f"the {what} name {name!r} contains control characters"
        if len(name) > MAX_NAME:
            return f"the {what} name is longer than {MAX_NAME} characters"
    if "." in table.db:
        return f"the database name {table.db!r} contains '.', which Iceberg catalogs read as a nested namespace"
    return None
