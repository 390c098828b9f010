"""`cdc status`: per-table freshness and progress, read from the lake's own snapshots and bookkeeping.

Freshness (the contract in ARCHITECTURE.md): a table's base is `complete_through` a source point when
every change committed at the source before it is in the base. A merge records the point its slice is
complete through in its commit; when nothing landed is left unmerged, the point the landing recorded for
the changelog holds for the base too. The three reads go in that order (landed points, changelog, base),
so a point read first is never claimed for a base that has not folded in what came before it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError

from cdc.config import Settings
from cdc.events.model import TableId
from cdc.ingest import dlq
from cdc.ingest.capture import MARKER_DB, CaptureRules
from cdc.ingest.commit import landed_offsets
from cdc.lake import bookkeeping, catalog as lake, state
from cdc.lake.contract import BOOTSTRAP_POSITION, COMPLETE_THROUGH, LANDED, MERGED_LANDED
from cdc.lake.state import Through
from cdc.quality.gate_results import GateSummary, last_gate

log = logging.getLogger(__name__)


@dataclass
class TableStatus:
    table_id: TableId
    table: str
    state: str  # streaming | halted
    changelog_rows: int | None = None
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    last_landed_ms: int | None = None
    base_rows: int | None = None
    last_merge_ms: int | None = None
    unmerged: int | None = None
    complete_through: Through | None = None  # of the base
    landed_through: Through | None = None  # of the changelog
    kafka_lag: int | None = None  # messages in Kafka after what the lake recorded; None: unknown
    gate: GateSummary | None = None  # the newest quality-gate run of its merges
    reason: str | None = None
    remedy: str | None = None

    def age_seconds(self, now_ms: int) -> float | None:
        return None if self.complete_through is None else max(0.0, (now_ms - self.complete_through.ts_ms) / 1000)


def when(ms: int | None) -> str:
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


def _later(a: Through | None, b: Through | None) -> Through | None:
    if a is None or b is None:
        return a or b
    return max(a, b, key=lambda p: (p.seq, p.ts_ms))


def _table(catalog: Catalog, table: TableId, landed: Through | None) -> TableStatus:
    out = TableStatus(table, str(table), "streaming", landed_through=landed)
    changelog = catalog.load_table(lake.changelog_name(table))  # after the landed point: see the module's docstring
    out.offsets = landed_offsets(changelog)
    cl_snap = changelog.current_snapshot()
    out.changelog_rows = _rows(changelog)
    out.last_landed_ms = cl_snap.timestamp_ms if cl_snap else None
    try:
        base = catalog.load_table(lake.base_name(table))
    except NoSuchTableError:
        return out
    out.base_rows = _rows(base)
    merged_upto: int | None = None
    base_through: Through | None = None
    published = False  # a bootstrap or a merge has published the base (a first bootstrap still running has not)
    for snap in lake.ancestors(base):
        props = snap.summary.additional_properties if snap.summary else {}
        published = published or bool(props.get(lake.MERGED_UPTO) or props.get(BOOTSTRAP_POSITION))
        if merged_upto is None and props.get(lake.MERGED_UPTO):
            merged_upto, out.last_merge_ms = int(props[lake.MERGED_UPTO]), snap.timestamp_ms
        if base_through is None and props.get(COMPLETE_THROUGH):
            base_through = Through.from_json(props[COMPLETE_THROUGH])
        if merged_upto is not None and base_through is not None and published:
            break
    # maintenance may have expired every snapshot that recorded them: the values pinned as table properties
    pinned = base.properties
    published = published or bool(pinned.get(lake.MERGED_UPTO) or pinned.get(BOOTSTRAP_POSITION))
    if merged_upto is None and pinned.get(lake.MERGED_UPTO):
        merged_upto = int(pinned[lake.MERGED_UPTO])
    if base_through is None and pinned.get(COMPLETE_THROUGH):
        base_through = Through.from_json(pinned[COMPLETE_THROUGH])
    merged_landed = bookkeeping.value(base, MERGED_LANDED)
    landed_now = bookkeeping.landing(changelog).landed
    if merged_landed is not None:
        out.unmerged = unmerged_rows(changelog, int(merged_landed))
        caught_up = published and int(merged_landed) >= landed_now
    else:  # merged before landing numbers existed: by snapshot
        unmerged = 0
        for snap in lake.ancestors(changelog):
            if snap.snapshot_id == merged_upto:
                break
            if snap.summary is not None:
                unmerged += int(snap.summary.additional_properties.get("added-records", "0"))
        out.unmerged = unmerged
        caught_up = published and (cl_snap is None or cl_snap.snapshot_id == merged_upto)
    out.complete_through = _later(base_through, landed if caught_up else None)
    return out


def unmerged_rows(changelog: Any, merged_landed: int) -> int:
    """Rows the landing commits numbered above `merged_landed` added (from their summaries; snapshots expired
    before they were merged are not counted)."""
    total = 0
    for snap in lake.ancestors(changelog):
        props = snap.summary.additional_properties if snap.summary is not None else {}
        number = props.get(LANDED)
        if number is None:
            continue  # a compaction or schema change: adds no new rows
        if int(number) <= merged_landed:
            break
        total += int(props.get("added-records", "0"))
    return total


def _kafka_lag(settings: Settings, statuses: list[TableStatus]) -> str | None:
    """Fill in each table's Kafka lag; returns why it is unknown (Kafka away), or None."""
    from cdc.ingest import progress
    from cdc.ingest.watermarks import admin_client

    rules = CaptureRules.from_settings(settings)
    topics = {s.table: rules.topic(s.table_id) for s in statuses}
    try:
        admin = admin_client(settings)
        parts = progress.data_partitions(admin, lambda t: t in set(topics.values()), timeout=3)
        ends = progress.end_offsets(admin, parts, timeout=3)
    except Exception as exc:  # noqa: BLE001 - status reports what it can; Kafka being away is one of its findings
        return f"Kafka lag unknown: {exc}"
    for s in statuses:
        topic = topics[s.table]
        landed = s.offsets.get(topic, {})
        s.kafka_lag = sum(max(0, end - landed.get(p, 0)) for (t, p), end in ends.items() if t == topic)
    return None


def table_status(settings: Settings, catalog: Catalog | None = None,
                 kafka: bool = True) -> tuple[list[TableStatus], int, list[state.Halted], list[str]]:
    """One status per user table, the dead-letter count, the halted tables, and notes (what is unknown)."""
    catalog = catalog if catalog is not None else lake.open_catalog(settings)
    halted = {t: h for t, h in state.halted_tables(catalog).items() if t.db != MARKER_DB}
    points = state.landed_through(catalog)
    known = user_tables(catalog)
    statuses = [_table(catalog, t, points.get(t)) for t in known]
    for table in sorted(set(halted) - set(known), key=str):  # halted before its lake tables were created
        statuses.append(TableStatus(table, str(table), "halted"))
    gates = last_gate(catalog)
    for s in statuses:
        s.gate = gates.get(s.table_id)
        h = halted.get(s.table_id)
        if h is not None:
            s.state, s.reason, s.remedy = "halted", h.reason, h.remedy
    notes = []
    if kafka and known:
        note = _kafka_lag(settings, [s for s in statuses if s.changelog_rows is not None])
        if note:
            notes.append(note)
    return statuses, dlq.count(catalog), sorted(halted.values(), key=lambda h: (h.db, h.table)), notes


def stale(statuses: list[TableStatus], max_lag_seconds: float, now_ms: int) -> list[str]:
    """Pure: a line per table whose base is not complete through a point younger than the limit."""
    out = []
    for s in statuses:
        age = s.age_seconds(now_ms)
        if age is None:
            out.append(f"{s.table}: no complete-through point recorded yet (is `cdc ingest` running and has it been merged?)")
        elif age > max_lag_seconds:
            out.append(f"{s.table}: complete through {s.complete_through.position if s.complete_through else '-'} at "
                       f"{when(s.complete_through.ts_ms if s.complete_through else None)}, {age:.0f} s ago (limit {max_lag_seconds:.0f} s)")
    return out


def gate_text(g: GateSummary | None) -> str:
    """Pure: the gate column of `cdc status`."""
    if g is None:
        return "-"
    if g.passed:
        return "passed" if g.published else "passed, not published"
    return f"FAILED: {', '.join(g.failed_checks)} (evidence: branch {g.branch})"


def as_json(s: TableStatus, now_ms: int) -> dict[str, Any]:
    """Pure: one table's status as `cdc status --output json` prints it."""
    def point(p: Through | None) -> dict[str, Any] | None:
        if p is None:
            return None
        return {"position": p.position, "seq": str(p.seq), "source_time": when(p.ts_ms),
                "age_seconds": round(max(0, now_ms - p.ts_ms) / 1000, 1)}

    return {
        "table": s.table, "state": s.state, "complete_through": point(s.complete_through),
        "landed_through": point(s.landed_through), "kafka_lag": s.kafka_lag, "unmerged": s.unmerged,
        "changelog_rows": s.changelog_rows, "base_rows": s.base_rows, "offsets": json.dumps(s.offsets, separators=(",", ":")),
        "last_landed": when(s.last_landed_ms), "last_merge": when(s.last_merge_ms),
        "last_gate": None if s.gate is None else {
            "passed": s.gate.passed, "failed_checks": list(s.gate.failed_checks), "branch": s.gate.branch,
            "checked_at": s.gate.checked_at.isoformat(), "published": s.gate.published},
        "reason": s.reason, "remedy": s.remedy,
    }
