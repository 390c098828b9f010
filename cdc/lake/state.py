"""Table states, recorded in the lake: a captured table is `streaming` unless it is `halted`.

A halted table's record lives in the properties of the `cdc_state` namespace (one key per table),
where no Iceberg maintenance job reaches, and survives every restart: the consumer leaves that
table's partitions paused, `cdc status` shows the reason and the remedy and exits non-zero, and
`cdc bootstrap DB.TABLE [--rebuild]` (the general remedy) clears it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchNamespaceError

from cdc.events.model import TableId
from cdc.lake.contract import HALTED_PREFIX, LANDED_THROUGH_PREFIX

log = logging.getLogger(__name__)

STATE_NAMESPACE = "cdc_state"


@dataclass(frozen=True)
class Halted:
    """Why a table stopped landing, where, and what brings it back."""

    db: str
    table: str
    reason: str
    remedy: str
    since: str  # ISO time, UTC
    topic: str | None = None
    offsets: dict[str, int] | None = None  # partition -> first offset not landed

    @property
    def table_id(self) -> TableId:
        return TableId(self.db, self.table)


def halt_record(table: TableId, reason: str, remedy: str, topic: str | None, offsets: dict[int, int] | None) -> Halted:
    """Pure: the record of a halt decided now."""
    return Halted(table.db, table.table, reason, remedy, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), topic,
                  {str(p): o for p, o in sorted(offsets.items())} if offsets else None)


@dataclass(frozen=True)
class Through:
    """A point in the source's history: every change committed before it is in the table it is recorded for.

    `seq` is the `_seq` of the point (a change with a smaller `_seq` is before it), `position` the binlog
    `file:pos`, `ts_ms` the source's wall time when the point was read (UTC milliseconds).
    """

    seq: int
    position: str
    ts_ms: int

    def to_json(self) -> str:
        return json.dumps({"seq": str(self.seq), "position": self.position, "ts_ms": self.ts_ms}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Through:
        doc = json.loads(raw)
        return cls(int(doc["seq"]), str(doc["position"]), int(doc["ts_ms"]))


def _key(table: TableId, prefix: str = HALTED_PREFIX) -> str:
    return prefix + json.dumps([table.db, table.table], ensure_ascii=False, separators=(",", ":"))


def _ensure_namespace(catalog: Catalog) -> None:
    try:
        catalog.create_namespace(STATE_NAMESPACE)
    except NamespaceAlreadyExistsError:
        pass


def record_halt(catalog: Catalog, halted: Halted) -> None:
    _ensure_namespace(catalog)
    catalog.update_namespace_properties(STATE_NAMESPACE, updates={_key(halted.table_id): json.dumps(asdict(halted))})
    log.error("%s is halted: %s. Remedy: %s", halted.table_id, halted.reason, halted.remedy)


def clear_halt(catalog: Catalog, table: TableId) -> bool:
    """Mark `table` streaming again; returns whether it was halted."""
    if table not in halted_tables(catalog):
        return False
    catalog.update_namespace_properties(STATE_NAMESPACE, removals={_key(table)})
    log.info("%s is no longer halted", table)
    return True


def halted_tables(catalog: Catalog) -> dict[TableId, Halted]:
    try:
        props = catalog.load_namespace_properties(STATE_NAMESPACE)
    except NoSuchNamespaceError:
        return {}
    out: dict[TableId, Halted] = {}
    for key, raw in props.items():
        if key.startswith(HALTED_PREFIX):
            h = Halted(**json.loads(raw))
            out[h.table_id] = h
    return out


def record_landed_through(catalog: Catalog, points: dict[TableId, Through]) -> None:
    """Record, per table, that its changelog holds every change before the point (one catalog call)."""
    if not points:
        return
    _ensure_namespace(catalog)
    catalog.update_namespace_properties(STATE_NAMESPACE, updates={_key(t, LANDED_THROUGH_PREFIX): p.to_json()
                                                                  for t, p in points.items()})


def landed_through(catalog: Catalog) -> dict[TableId, Through]:
    """Per table: the newest point its changelog is known to be complete through."""
    try:
        props = catalog.load_namespace_properties(STATE_NAMESPACE)
    except NoSuchNamespaceError:
        return {}
    out: dict[TableId, Through] = {}
    for key, raw in props.items():
        if key.startswith(LANDED_THROUGH_PREFIX):
            db, table = json.loads(key.removeprefix(LANDED_THROUGH_PREFIX))
            out[TableId(db, table)] = Through.from_json(raw)
    return out


def forget_landed_through(catalog: Catalog, table: TableId) -> None:
    """Drop a table's landed point (its lake tables are gone)."""
    if table in landed_through(catalog):
        catalog.update_namespace_properties(STATE_NAMESPACE, removals={_key(table, LANDED_THROUGH_PREFIX)})
