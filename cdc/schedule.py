"""Which tables a scheduled merge is due for (`cdc tables --due`, the first task of Airflow's merge DAG).

Each table is merged every `tables.<db.table>.merge_interval` minutes (default `merge.interval`, 15 to 60).
The Airflow DAG only declares (it reads no settings and no lake at parse time), ticks every few minutes and
asks this module, at run time, which tables are due. A table is due when

* it is not halted (an operator resolves that; a rebuild holds its table until it publishes),
* something landed that its base has not folded in (a merge with nothing to do commits nothing, so its
  last merge would never get younger and an idle table would be merged on every tick), and
* its last merge attempt is at least its interval old, or it was never merged. The last attempt is the
  newest base snapshot on `main` whose summary records a merged changelog snapshot (a published merge or a
  bootstrap), or the head of an audit branch a failed gate left as evidence, whichever is newer: a table
  whose gate fails is retried once per interval, not on every tick.

`within_ms` lets a caller take tables that fall due before its next look: a merge commits some time after
its tick, so with `within_ms` of half the tick a table keeps its interval instead of slipping one tick.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdc.events.model import TableId
from cdc.lake.contract import MERGED_LANDED, MERGED_UPTO

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from cdc.config import Settings

MINUTE_MS = 60_000
AUDIT_PREFIX = "audit_"  # = spark_jobs.gate_sql.AUDIT_PREFIX: the branches write-audit-publish writes


def when(ms: int | None) -> str:
    """Pure: a lake time as `cdc status` shows it (`-`: none); cdc.status would import the quality stack for it."""
    return "-" if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def next_merge_ms(last_merge_ms: int | None, interval_minutes: int) -> int | None:
    """Pure: when a table merged at `last_merge_ms` is due again (None: never merged, due now)."""
    return None if last_merge_ms is None else last_merge_ms + interval_minutes * MINUTE_MS


def due(tables: Sequence[str], last_merge_ms: Mapping[str, int | None], intervals: Mapping[str, int], now_ms: int, *,
        within_ms: int = 0, pending: Mapping[str, bool] | None = None, halted: Collection[str] = ()) -> list[str]:
    """Pure: the tables, in the given order, whose merge is due at `now_ms` (or within `within_ms` after it).

    `last_merge_ms`: per table, its last merge attempt (missing or None: never merged); `intervals`: minutes.
    `pending`: per table, whether it has landed changes its base has not folded in (missing: assume so).
    """
    out = []
    for t in tables:
        if t in halted or (pending is not None and not pending.get(t, True)):
            continue
        at = next_merge_ms(last_merge_ms.get(t), intervals[t])
        if at is None or at <= now_ms + within_ms:
            out.append(t)
    return out


@dataclass(frozen=True)
class TableSchedule:
    """One table's merge schedule as the lake and the settings say it now."""

    table: str
    state: str  # streaming | halted
    interval_minutes: int
    last_merge_ms: int | None  # the last published merge (or bootstrap)
    last_failed_ms: int | None  # the newest audit branch a failed gate left, if newer attempts did not drop it
    pending: bool  # landed changes the base has not folded in

    @property
    def last_attempt_ms(self) -> int | None:
        times = [t for t in (self.last_merge_ms, self.last_failed_ms) if t is not None]
        return max(times) if times else None


def due_tables(schedules: Iterable[TableSchedule], now_ms: int, within_ms: int = 0) -> list[str]:
    """Pure: `due` over what `read_schedules` found."""
    rows = list(schedules)
    return due([s.table for s in rows], {s.table: s.last_attempt_ms for s in rows}, {s.table: s.interval_minutes for s in rows},
               now_ms, within_ms=within_ms, pending={s.table: s.pending for s in rows},
               halted={s.table for s in rows if s.state == "halted"})


def _summary(snapshot: Any) -> dict[str, str]:
    return dict(snapshot.summary.additional_properties) if snapshot.summary is not None else {}


def _last_merge(base: Any) -> tuple[int | None, int | None]:
    """The newest merge on `main`: (changelog snapshot it folded in, its commit time), or (None, None).

    When snapshot expiry took every merge commit, the position pinned as a table property still says what is
    merged (so an idle table stays not due), and the time is unknown (due as soon as something lands).
    """
    from cdc.lake.catalog import ancestors

    for snapshot in ancestors(base):
        merged = _summary(snapshot).get(MERGED_UPTO)
        if merged:
            return int(merged), int(snapshot.timestamp_ms)
    pinned = base.properties.get(MERGED_UPTO)
    return (int(pinned) if pinned else None), None


def _last_failed(base: Any) -> int | None:
    """Commit time of the newest audit branch head (a published branch is dropped: what is left failed its gate)."""
    times = []
    for name, ref in base.metadata.refs.items():
        snapshot = base.snapshot_by_id(ref.snapshot_id) if name.startswith(AUDIT_PREFIX) else None
        if snapshot is not None:
            times.append(int(snapshot.timestamp_ms))
    return max(times) if times else None


def _pending(changelog: Any, merged_upto: int | None) -> bool:
    """Whether a landing commit with rows is newer than the changelog snapshot the base folded in."""
    from cdc.lake.catalog import ancestors

    for snapshot in ancestors(changelog):
        if snapshot.snapshot_id == merged_upto:
            return False
        summary = snapshot.summary
        if summary is not None and str(summary.operation.value) == "append" and int(_summary(snapshot).get("added-records", "0")):
            return True
    return False


def read_schedules(settings: Settings, catalog: Catalog, tables: Sequence[TableId]) -> list[TableSchedule]:
    """Each table's merge schedule from the lake (its base's and changelog's metadata) and the settings."""
    from pyiceberg.exceptions import NoSuchTableError

    from cdc.lake import bookkeeping, catalog as lake, state

    halted = state.halted_tables(catalog)
    out = []
    for t in tables:
        merged_upto = last_merge = last_failed = None
        try:
            base = catalog.load_table(lake.base_name(t))
        except NoSuchTableError:
            pass
        else:
            merged_upto, last_merge = _last_merge(base)
            last_failed = _last_failed(base)
        changelog = catalog.load_table(lake.changelog_name(t))
        merged_landed = bookkeeping.value(base, MERGED_LANDED) if merged_upto is not None or last_merge is not None else None
        if merged_landed is not None:  # survives compaction and expiry of the changelog
            pending = bookkeeping.landing(changelog).landed > int(merged_landed)
        else:
            pending = _pending(changelog, merged_upto)
        out.append(TableSchedule(str(t), "halted" if t in halted else "streaming", settings.merge_interval_for(t.db, t.table),
                                 last_merge, last_failed, pending))
    return out


def merge_job_args(settings: Settings, table: TableId) -> list[str]:
    """The arguments of `spark_jobs/merge.py` for one table, as `cdc merge` would run it (for spark-submit)."""
    def per_table(value: Any) -> str:
        return json.dumps({str(table): value}, separators=(",", ":"), sort_keys=True)

    return ["--catalog", settings.catalog.name, "--tombstone-days", str(settings.merge.tombstone_days),
            "--expectations", per_table(settings.table_settings(table.db, table.table).expectations),
            "--quality-home", str((Path(settings.home) / "quality").resolve()),
            "--merge-mode", per_table(settings.merge_mode_for(table.db, table.table)), "--", str(table)]
