"""`cdc status`: per-table freshness and progress, read from the lake's own snapshots."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError

from cdc.config import Settings
from cdc.events.model import TableId
from cdc.ingest import dlq
from cdc.ingest.capture import MARKER_DB
from cdc.ingest.commit import landed_offsets
from cdc.lake import catalog as lake, state


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rows(table: Any) -> int:
    snap = table.current_snapshot()
    if snap is None or snap.summary is None:
        return 0
    return int(snap.summary.additional_properties.get("total-records", "0"))


def user_tables(catalog: Catalog) -> list[TableId]:
    """The captured source tables that have lake tables, without the internal marker database."""
    return [t for t in lake.lake_tables(catalog) if t.db != MARKER_DB]


def table_status(settings: Settings, catalog: Catalog | None = None) -> tuple[list[tuple[Any, ...]], int, list[state.Halted]]:
    """Rows for `cdc status` (one per user table), the dead-letter count, and the halted tables."""
    catalog = catalog if catalog is not None else lake.open_catalog(settings)
    rows: list[tuple[Any, ...]] = []
    halted = {t: h for t, h in state.halted_tables(catalog).items() if t.db != MARKER_DB}
    known = user_tables(catalog)
    for table in known:
        changelog = catalog.load_table(lake.changelog_name(table))
        offsets = landed_offsets(changelog)
        cl_snap = changelog.current_snapshot()
        try:
            base = catalog.load_table(lake.base_name(table))
        except NoSuchTableError:
            base = None
        merged_upto: int | None = None
        merged_at: int | None = None
        if base is not None:
            for snap in lake.ancestors(base):
                raw = snap.summary.additional_properties.get(lake.MERGED_UPTO) if snap.summary else None
                if raw:
                    merged_upto, merged_at = int(raw), snap.timestamp_ms
                    break
        unmerged = 0
        for snap in lake.ancestors(changelog):
            if snap.snapshot_id == merged_upto:
                break
            if snap.summary is not None:
                unmerged += int(snap.summary.additional_properties.get("added-records", "0"))
        rows.append((
            str(table),
            "halted" if table in halted else "streaming",
            _rows(changelog),
            json.dumps(offsets, separators=(",", ":")),
            _when(cl_snap.timestamp_ms if cl_snap else None),
            _rows(base) if base is not None else "-",
            _when(merged_at),
            unmerged,
        ))
    for table in sorted(set(halted) - set(known), key=str):  # halted before its lake tables were created
        rows.append((str(table), "halted", "-", "-", "-", "-", "-", "-"))
    return rows, dlq.count(catalog), sorted(halted.values(), key=lambda h: (h.db, h.table))
