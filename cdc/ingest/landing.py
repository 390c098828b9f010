"""Landing one batch: the order of a flush's commits, and which table halts when one cannot land.

The order (see `cdc.ingest.offsets` for why it keeps every offset exactly once):
1. prepare each table: create its lake tables on first sight (with an anchor commit recording
   where its messages start), evolve schemas, build its Arrow rows; a value that does not fit
   its lake column becomes a dead letter; a table that cannot land (a name or column the lake
   cannot take, a schema change Iceberg refuses, messages lost before landing) is halted;
2. the dead letters, in one commit;
3. each table's changes, one commit per table.
A fault point (`CDC_FAULT_POINT`) sits between every two commits. Halting is per table: its
topic's messages are not landed, the consumer pauses its partitions, every other table lands.
No Kafka client here: `cdc dlq replay` lands through the same code.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table

from cdc import faults
from cdc.config import Settings
from cdc.errors import CdcError, ServiceError
from cdc.events.model import ChangeEvent, DecodeFailure, KafkaCoordinates, Kind, Op, TableId, TableSchema
from cdc.ingest import ddl, dlq, offsets as off
from cdc.ingest.batch import Batch, Raw, TableChanges
from cdc.ingest.capture import CaptureRules, unsupported_name
from cdc.ingest.commit import append_once, landed_offsets
from cdc.lake import bookkeeping, catalog as lake, evolution, schema as lake_schema, state
from cdc.lake.contract import reserved_name
from cdc.lake.writer import plain_arrow, to_arrow
from cdc.retry import RetryPolicy, error_kind, retrying

log = logging.getLogger(__name__)
T = TypeVar("T")

REBUILD = "cdc bootstrap {table} --rebuild"
BOOTSTRAP = "cdc bootstrap {table}"


class TableCannotLand(CdcError):
    """Terminal for one table: it halts with this reason; every other table goes on."""

    def __init__(self, reason: str, remedy: str) -> None:
        super().__init__(reason)
        self.reason, self.remedy = reason, remedy


@dataclass
class Prepared:
    table: TableId
    topic: str
    rows: pa.Table
    coordinates: list[KafkaCoordinates]


@dataclass
class Outcome:
    landed: dict[TableId, int] = field(default_factory=dict)
    commits: int = 0
    dead_letters: int = 0
    halted: dict[TableId, state.Halted] = field(default_factory=dict)
    held_topics: set[str] = field(default_factory=set)  # topics of halted tables: nothing of them landed
    skipped_truncates: int = 0


class ChangelogSink:
    def __init__(self, catalog: Catalog, table: TableId) -> None:
        self.catalog, self.table, self.name = catalog, table, str(table)

    def load(self) -> Table:
        return bookkeeping.with_landed_column(lake.landing_table(self.catalog.load_table(lake.changelog_name(self.table))))

    def write(self, table: Table, rows: pa.Table, record: bookkeeping.Landing) -> None:
        # AFTER_WRITE: data files are written; the catalog does not know them yet
        bookkeeping.commit(table, rows, record, after_write=lambda: faults.point(faults.AFTER_WRITE))


class DeadLetterSink:
    name = "cdc_dlq.events"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def load(self) -> Table:
        return lake.landing_table(dlq.dlq_table(self.catalog))

    def write(self, table: Table, rows: pa.Table, record: bookkeeping.Landing) -> None:
        bookkeeping.commit(table, rows, record)


class Lander:
    """Lands batches into the lake (see the module doc for the order)."""

    ddl_wait_seconds = 15.0  # how long a disappeared column waits for its schema-change event to be readable

    def __init__(self, settings: Settings, catalog: Catalog, policy: RetryPolicy | None = None,
                 ddl_history: ddl.DdlHistory | None = None) -> None:
        self.settings, self.catalog = settings, catalog
        self.ddl = ddl_history
        self._ddl_read = False
        self.policy = policy or RetryPolicy(deadline_seconds=settings.ingest.commit_timeout_seconds)
        # schemas known to match the lake, with the changelog's schema id they were checked against
        self._evolved: set[tuple[TableId, TableSchema, int]] = set()

    def close(self) -> None:
        if self.ddl is not None:
            self.ddl.close()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return retrying(what, self.policy, fn)

    # ------------------------------------------------------------------------------- one batch
    def land(self, batch: Batch, unanchored: Collection[tuple[str, int]] = (), topic_ids: dict[str, str] | None = None) -> Outcome:
        """Land `batch`: dead letters first, then one commit per table. Raises only when the
        catalog stays away past the policy's deadline (then nothing later in the batch landed)."""
        outcome = Outcome()
        ids = topic_ids or {}
        failures = list(batch.failures)
        already = self._call("read table states", lambda: state.halted_tables(self.catalog))
        self._ddl_read = False  # the DDL history is read once per batch, when a table needs it
        prepared: list[Prepared] = []
        for table, changes in sorted(batch.tables.items(), key=lambda kv: (kv[0].db, kv[0].table)):
            if table in already:  # halted earlier (or by another consumer meanwhile)
                outcome.halted[table] = already[table]
                outcome.held_topics.add(changes.topic)
                continue
            try:
                ready = self._prepare(table, changes, unanchored, failures, outcome, batch.starts_for(changes.topic), ids)
            except TableCannotLand as exc:
                self._halt(outcome, table, changes, exc.reason, exc.remedy)
                continue
            except ServiceError:
                raise  # the catalog stayed away: every table waits
            except Exception as exc:  # noqa: BLE001 - anything else while preparing one table halts that table
                if error_kind(exc) != "terminal":
                    raise
                self._halt(outcome, table, changes, f"the table could not be prepared for landing: {type(exc).__name__}: {exc}",
                           REBUILD.format(table=table))
                continue
            if ready is not None:
                prepared.append(ready)
        faults.point(faults.BEFORE_DEAD_LETTERS)
        if failures:
            topics = {f.coordinates.topic for f in failures}
            ends = {t: batch.ends_for(t) for t in topics}
            rows = dlq.to_arrow(failures, dt.datetime.now(dt.UTC), plain_arrow(dlq.SCHEMA.as_arrow()))
            outcome.dead_letters = append_once(DeadLetterSink(self.catalog), rows, [f.coordinates for f in failures],
                                               ends, self.policy, topic_ids={t: ids[t] for t in topics if t in ids})
            if outcome.dead_letters:
                log.info("dead-lettered %d messages into %s", outcome.dead_letters, DeadLetterSink.name)
        faults.point(faults.AFTER_DEAD_LETTERS)
        for ready in prepared:
            if ready.topic in outcome.held_topics:
                continue  # a table sharing this topic halted: the partition stays where it is
            try:
                n = append_once(ChangelogSink(self.catalog, ready.table), ready.rows, ready.coordinates,
                                {ready.topic: batch.ends_for(ready.topic)}, self.policy,
                                topic_ids={ready.topic: ids[ready.topic]} if ready.topic in ids else None)
            except ServiceError:
                raise  # the catalog is away: every table waits
            except Exception as exc:  # noqa: BLE001 - terminal for this table alone (error_kind said so)
                self._halt(outcome, ready.table, batch.tables[ready.table], f"the changelog commit failed: {exc}",
                           REBUILD.format(table=ready.table))
                continue
            if n:
                last = ready.coordinates[-1]
                log.info("%s: landed %d changes, up to %s[%d]@%d", ready.table, n, last.topic, last.partition, last.offset)
                outcome.landed[ready.table] = n
                outcome.commits += 1
            faults.point(faults.AFTER_TABLE)
        return outcome

    def land_replayed(self, events: list[ChangeEvent], raws: list[Raw]) -> tuple[int, list[DecodeFailure]]:
        """Land dead letters that decode now (`cdc dlq replay`), below the recorded offsets on purpose.
        Returns how many landed and the ones that still cannot land (they stay dead letters).

        Landing one twice is harmless: the merge keeps one change per key and position.
        """
        by_table: dict[TableId, TableChanges] = {}
        for e, raw in zip(events, raws, strict=True):
            changes = by_table.setdefault(e.table, TableChanges())
            changes.events.append(e)
            changes.raws.append(raw)
        total = 0
        outcome = Outcome()
        failures: list[DecodeFailure] = []
        dead = dlq.committed(self.catalog)
        for table, changes in by_table.items():
            # a table the replay creates is anchored where the dead-letter table stands: everything of
            # its topic below that was read once, and its dead letters are what is replayed here
            anchors = dead.get(changes.topic) or {p: o + 1 for p, o in _first_offsets(changes.events, max).items()}
            try:
                ready = self._prepare(table, changes, (), failures, outcome, anchors, {})
            except TableCannotLand as exc:
                log.warning("%s: cannot replay into it: %s", table, exc.reason)
                failures.extend(DecodeFailure("TableCannotLand", exc.reason, k, v, e.coordinates, table, h)
                                for e, (k, v, h) in zip(changes.events, changes.raws, strict=True))
                continue
            if ready is not None:
                total += append_once(ChangelogSink(self.catalog, table), ready.rows, ready.coordinates, {},
                                     self.policy, replay=True)
        return total, failures

    # ------------------------------------------------------------------------------- one table
    def _prepare(self, table: TableId, changes: TableChanges, unanchored: Collection[tuple[str, int]],
                 failures: list[DecodeFailure], outcome: Outcome, anchors: dict[int, int],
                 topic_ids: dict[str, str]) -> Prepared | None:
        reason = unsupported_name(table)
        if reason:
            raise TableCannotLand(f"{reason}; it cannot be landed", f"rename it at the source and run `{BOOTSTRAP.format(table=table)}`")
        events, topic = changes.events, changes.topic
        name = lake.changelog_name(table)
        keyed = next((e.schema for e in events if e.op is not Op.TRUNCATE), None)  # a keyless table has no key
        starts = _first_offsets(events)
        try:
            changelog: Table | None = self._call(f"{table}: load", lambda: self.catalog.load_table(name))
        except NoSuchTableError:
            changelog = None
        if changelog is None:
            if keyed is None:  # only truncates, of a table the lake has no rows of: nothing to empty
                outcome.skipped_truncates += len(events)
                log.info("%s: truncate before the table's first change: nothing in the lake to empty, skipped", table)
                return None
            lost = sorted(p for p in starts if (topic, p) in unanchored)
            if lost:
                raise TableCannotLand(
                    f"{topic} partitions {lost} no longer start at offset 0 and nothing of {table} was landed from them: "
                    "older changes were deleted by retention before they were landed", BOOTSTRAP.format(table=table))
            _refuse_reserved(table, keyed)
            _refuse_unbucketable(table, keyed)
            changelog = self._call(f"{table}: create", lambda: lake.ensure_tables(self.catalog, self.settings, table, keyed,
                                                                                 min(e.seq for e in events)))
            # anchored where this batch starts, not at its own first change: another new table of the same
            # topic may be created after it, and until then only this anchor holds the partition back
            self._anchor(table, {topic: dict(anchors)}, {topic: topic_ids[topic]} if topic in topic_ids else {})
        elif any((topic, p) in unanchored for p in starts):  # only then: what did this table record?
            landed = landed_offsets(changelog).get(topic, {})
            lost = sorted(p for p in starts if p not in landed and (topic, p) in unanchored)
            if lost:
                raise TableCannotLand(
                    f"{topic} partitions {lost} no longer start at offset 0 and {table} recorded nothing for them: "
                    "changes may have been deleted by retention before they were landed", REBUILD.format(table=table))
        for schema, first in self._segments(table, changelog, events):  # in source order
            changelog = self._evolve(table, changelog, schema, first)
        return self._rows(table, topic, changelog, changes, failures)

    def _segments(self, table: TableId, changelog: Table, events: list[ChangeEvent]) -> list[tuple[TableSchema, int]]:
        """The batch's runs of one schema between two ALTERs of the table, as (schema, first position), in
        source order: each is evolved to before its rows are written (older runs are translated)."""
        schema_seq = int(changelog.properties.get(evolution.SCHEMA_SEQ, "0") or 0)
        ordered = sorted(events, key=lambda e: e.seq)
        alters = [c.seq for c in self._alters(table, schema_seq, ordered[-1].seq)] if ordered else []
        out: list[tuple[TableSchema, int]] = []
        last: tuple[TableSchema, int] | None = None
        for e in ordered:
            mark = (e.schema, bisect.bisect_left(alters, e.seq))
            if mark != last:
                out.append((e.schema, e.seq))
                last = mark
        return out

    def _anchor(self, table: TableId, starts: off.Offsets, topic_ids: dict[str, str]) -> None:
        """An empty commit recording where a new table's messages start (so a crash before its first
        landing does not leave it with nothing recorded)."""
        sink = ChangelogSink(self.catalog, table)

        def attempt() -> None:
            t = sink.load()
            if t.current_snapshot() is None:
                record = bookkeeping.Landing(starts, topic_ids, bookkeeping.landing(t).landed)  # no rows: no new number
                sink.write(t, plain_arrow(t.schema().as_arrow()).empty_table(), record)

        self._call(f"{table}: anchor", attempt)

    def _evolve(self, table: TableId, changelog: Table, source: TableSchema, first_seq: int) -> Table:
        """Bring the lake tables to the schema of events starting at `first_seq` (see `cdc.lake.evolution`):
        renames, additions, widenings and drops flow in; anything else halts the table. Runs when the
        events' schema differs from the lake's or the DDL history shows an ALTER of the table since the
        lake's schema position (a swap or a DROP and ADD of one name leave the events' schema as it was).
        A schema older than the lake's (replayed or late events) changes nothing: its values are translated."""
        schema_seq = int(changelog.properties.get(evolution.SCHEMA_SEQ, "0") or 0)
        if first_seq < schema_seq:
            return changelog
        alters = self._alters(table, schema_seq, first_seq)
        cached = (table, source, changelog.metadata.current_schema_id)
        if not alters and cached in self._evolved:
            return changelog
        if source.key:
            _refuse_reserved(table, source)
        base = self._call(f"{table}: load", lambda: self.catalog.load_table(lake.base_name(table)))
        lake_key = tuple(json.loads(changelog.properties.get(lake.PROP_KEY, "[]")))
        options = self._options(table, list(evolution.Bookkeeping.of(base.properties).frozen))
        try:
            first = evolution.plan(evolution.lake_source_columns(changelog.schema()), lake_key, source, (), **options)
            second = evolution.plan(evolution.lake_source_columns(base.schema()), lake_key, source, (), **options)
        except evolution.Refused as exc:
            if not alters:  # with the history, renames may explain it: planned again below
                raise TableCannotLand(f"a schema change the lake cannot take in place: {exc.reason}",
                                      REBUILD.format(table=table)) from exc
            first = second = evolution.Plan()
        if first.empty and second.empty and not alters:
            self._evolved.add(cached)
            return changelog
        at = self._history(table, schema_seq, first_seq, gone=[*first.drops, *first.freezes, *second.drops, *second.freezes],
                           added=[c.name for c in (*first.adds, *second.adds)], excluded=options["excluded"])
        renames = [(o, n) for o, n, _ in at.renamed]
        readded, dropped = at.readded, [n for n, _ in at.dropped]
        for ident, kind in ((lake.base_name(table), "base"), (lake.tombstones_name(table), "tombstones"),
                            (lake.changelog_name(table), "changelog")):
            def apply(ident: tuple[str, str] = ident, kind: str = kind) -> str:
                target = self.catalog.load_table(ident)
                try:
                    todo = evolution.plan(evolution.lake_source_columns(target.schema()), lake_key, source, renames,
                                          key_columns_only=kind == "tombstones", readded=readded, dropped=dropped, **options)
                    at.check(todo)
                except evolution.Refused as exc:
                    raise TableCannotLand(f"a schema change the lake cannot take in place: {exc.reason}",
                                          REBUILD.format(table=table)) from exc
                props = _bookkeeping(kind, target.properties, todo, source, at)
                if todo.empty and not props:
                    return ""
                with target.transaction() as tx:
                    if not todo.empty:
                        _apply(tx, todo)
                    if props:
                        tx.set_properties(props)
                return todo.describe() or "schema position moved"

            try:
                done = self._call(f"{table}: evolve {'.'.join(ident)}", apply)
            except (TableCannotLand, ServiceError):
                raise
            except Exception as exc:
                if error_kind(exc) != "terminal":
                    raise
                raise TableCannotLand(f"a schema change the lake cannot take: {exc}", REBUILD.format(table=table)) from exc
            if done:
                log.info("%s: %s: %s (at source position %d)", table, ".".join(ident), done, at.schema)
        changelog = self._call(f"{table}: load", lambda: self.catalog.load_table(lake.changelog_name(table)))
        self._evolved.add((table, source, changelog.metadata.current_schema_id))
        return changelog

    def _options(self, table: TableId, frozen: list[str]) -> dict[str, Any]:
        ts = self.settings.table_settings(table.db, table.table)
        return {"frozen": frozen, "excluded": sorted(self.settings.excluded_columns(table.db, table.table)),
                "dropped_columns": ts.dropped_columns, "schema_changes": ts.schema_changes}

    def _alters(self, table: TableId, after: int, upto: int) -> list[ddl.SchemaChange]:
        """The table's ALTERs in (after, upto] from the DDL history as read for this batch (none without one)."""
        history = self.ddl
        if history is None:
            return []
        refresh = not self._ddl_read
        self._ddl_read = True
        return self._call(f"{table}: read the DDL history", lambda: history.changes(table, after, upto, refresh=refresh))

    def _history(self, table: TableId, after: int, upto: int, gone: list[str], added: list[str],
                 excluded: list[str]) -> evolution.Positions:
        """The renames, additions and drops since the lake's schema and their positions, from the DDL history.
        A column that appeared or disappeared needs a schema-change event to say what happened (renamed,
        dropped, added): without one (the topic lags, or it is off) the table halts rather than guess."""
        deadline = time.monotonic() + (self.ddl_wait_seconds if gone or added else 0)
        history = self.ddl
        while True:
            found = self._call(f"{table}: read the DDL history", lambda: history.changes(table, after, upto)) if history else []
            alters = [(c.seq, ddl.parse_alter(c.ddl)) for c in found]
            named = {n.casefold() for _, a in alters for n in (*a.dropped, *(o for o, _ in a.renames))}
            made = {n.casefold() for _, a in alters for n in (*a.added, *(n for _, n in a.renames))}
            unexplained = [n for n in gone if n not in excluded and n.casefold() not in named]
            unexplained += [n for n in added if n.casefold() not in made]
            if not unexplained or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        if unexplained:
            raise TableCannotLand(
                f"columns {sorted(set(unexplained))} appeared in or vanished from the changes of {table} and no schema-change "
                "event says how (added, renamed, dropped): the connector's schema-change topic must be on "
                "(include.schema.changes)", REBUILD.format(table=table))
        return evolution.Positions(
            upto,
            renamed=tuple((o, n, seq) for seq, a in alters for o, n in a.renames),
            added=tuple((n, seq) for seq, a in alters for n in a.added),
            dropped=tuple((n, seq) for seq, a in alters for n in a.dropped),
            newest=max((seq for seq, _ in alters), default=None),
            volatile=tuple((n, seq) for seq, a in alters for n in a.volatile),
            redefined=tuple((n, seq) for seq, a in alters for n in a.redefined),
        )

    def _rows(self, table: TableId, topic: str, changelog: Table, changes: TableChanges,
              failures: list[DecodeFailure]) -> Prepared:
        """The Arrow rows; a change whose values do not fit the lake's columns becomes a dead letter."""
        target = plain_arrow(changelog.schema().as_arrow())
        now = dt.datetime.now(dt.UTC)
        renames = evolution.read_json(changelog.properties, evolution.RENAMES, [])
        if renames:  # events older than a rename carry the old name
            changes.events = [_renamed(e, renames) for e in changes.events]
        try:
            rows = to_arrow(changes.events, target, now)
            return Prepared(table, topic, rows, [e.coordinates for e in changes.events])
        except (pa.ArrowException, ValueError, TypeError, OverflowError, ArithmeticError):
            pass  # find the culprits one by one (rare: the decoder checks values against their own schema)
        good: list[ChangeEvent] = []
        for event, (key, value, headers) in zip(changes.events, changes.raws, strict=True):
            try:
                to_arrow([event], target, now)
                good.append(event)
            except (pa.ArrowException, ValueError, TypeError, OverflowError, ArithmeticError) as exc:
                log.warning("%s: value does not fit the lake table at %s[%d]@%d: %s", table, event.coordinates.topic,
                            event.coordinates.partition, event.coordinates.offset, exc)
                failures.append(DecodeFailure("ValueDoesNotFit", f"{table}: a value does not fit the lake table: {exc}",
                                              key, value, event.coordinates, table, headers))
        return Prepared(table, topic, to_arrow(good, target, now), [e.coordinates for e in good])

    def _halt(self, outcome: Outcome, table: TableId, changes: TableChanges, reason: str, remedy: str) -> None:
        topic = changes.topic
        record = state.halt_record(table, reason, remedy, topic, _first_offsets(changes.events))
        self._call(f"{table}: record the halt", lambda: state.record_halt(self.catalog, record))
        outcome.halted[table] = record
        outcome.held_topics.add(topic)


def anchor_bootstrap(catalog: Catalog, rules: CaptureRules, table: TableId, anchor: dict[int, int],
                     high_now: dict[int, int], topic_id: str | None, policy: RetryPolicy) -> None:
    """After a bootstrap published its snapshot: record in the changelog where streaming takes over
    (`offsets.reanchor`), and clear a halt. A rebuild after a recreated topic moves the offsets back."""
    topic = rules.topic(table)
    sink = ChangelogSink(catalog, table)

    def attempt() -> None:
        changelog = sink.load()
        before = bookkeeping.landing(changelog)
        landed, landed_ids = before.offsets, before.topic_ids
        current = {topic: topic_id} if topic_id else {}
        same = not off.other_incarnation(landed_ids, current, topic)
        moved = {**landed, topic: off.reanchor(landed.get(topic, {}), anchor, high_now, same_topic=same)}
        if moved != landed or changelog.current_snapshot() is None or (topic_id and landed_ids.get(topic) != topic_id):
            sink.write(changelog, plain_arrow(changelog.schema().as_arrow()).empty_table(),
                       bookkeeping.Landing(moved, {**landed_ids, **current}, before.landed))  # no rows: no new number
            log.info("%s: streaming takes over at %s", table, off.encode({topic: moved[topic]}))

    retrying(f"{table}: anchor the bootstrap", policy, attempt)
    retrying(f"{table}: clear the halt", policy, lambda: state.clear_halt(catalog, table))


def _renamed(event: ChangeEvent, renames: list[list[Any]]) -> ChangeEvent:
    values = evolution.translate(event.values, event.seq, renames)
    return event if values is None else dataclasses.replace(event, values=values)


def _apply(tx: Any, todo: evolution.Plan) -> None:
    """One plan in one transaction: renames (through temporary names when they trade names, a swap) and
    drops first, then additions and widenings under the final names."""
    current = {f.name for f in tx.table_metadata.schema().fields}
    trading = any(new in current for _, new in todo.renames)
    if todo.renames or todo.drops:
        with tx.update_schema() as update:
            for i, (old, new) in enumerate(todo.renames):
                update.rename_column(old, f"_cdc_rename_{i}" if trading else new)
            for name in todo.drops:
                update.delete_column(name)
    if trading:
        with tx.update_schema() as update:
            for i, (_, new) in enumerate(todo.renames):
                update.rename_column(f"_cdc_rename_{i}", new)
    if todo.adds or todo.widens:
        with tx.update_schema() as update:
            for column in todo.adds:
                update.add_column(column.name, lake_schema.iceberg_type(column.type))
            for name, wider in todo.widens:
                update.update_column(name, field_type=wider)


def _bookkeeping(kind: str, properties: dict[str, str], todo: evolution.Plan, source: TableSchema,
                 at: evolution.Positions) -> dict[str, str]:
    """Pure: the table properties a plan changes (renames and the schema position on the changelog,
    defaults and frozen columns on the base, the key on all three). Empty when none changes."""
    out: dict[str, str] = {}
    moved = dict(todo.renames)
    if todo.key is not None:
        out[lake.PROP_KEY] = json.dumps(list(todo.key))
    if kind == "changelog":
        if at.renamed:  # every rename on its own, so an event written between two of them is translated too
            log_ = evolution.read_json(properties, evolution.RENAMES, [])
            known = {(str(s), str(o), str(n)) for s, o, n in log_}
            fresh = [[str(seq), o, n] for o, n, seq in at.renamed if (str(seq), o, n) not in known]
            if fresh:
                out[evolution.RENAMES] = json.dumps([*log_, *fresh])
        if (not todo.empty or at.newest is not None) and int(properties.get(evolution.SCHEMA_SEQ, "0") or 0) < at.schema:
            out[evolution.SCHEMA_SEQ] = str(at.schema)
    if kind == "base":
        book = evolution.Bookkeeping.of(properties)
        defaults = {moved.get(n, n): d for n, d in book.defaults.items() if n not in todo.drops}
        for column in todo.adds:
            text = evolution.default_text(column.default)
            if text is not None:
                defaults[column.name] = {"below": str(at.add(column.name)), "type": str(lake_schema.iceberg_type(column.type)),
                                         "text": text}
        frozen = {n: s for n, s in book.frozen.items() if n not in source.names}
        frozen.update({n: at.drop(n) for n in todo.freezes})
        if defaults != book.defaults:
            out[evolution.COLUMN_DEFAULTS] = json.dumps(defaults, sort_keys=True)
        if frozen != book.frozen:
            out[evolution.FROZEN_COLUMNS] = json.dumps(frozen, sort_keys=True)
    return out


def _refuse_reserved(table: TableId, schema: TableSchema) -> None:
    clash = [c for c in schema.names if reserved_name(c)]
    if clash:
        raise TableCannotLand(
            f"source columns {clash} collide with the lake's own column names (`_op`, `_seq`, `_source_ts`, `_ingested_at`, "
            "`_kafka_*` and anything starting with `_cdc_`, in any letter case)",
            f"rename the columns at the source, then run `{BOOTSTRAP.format(table=table)}`")


def unbucketable_key(schema: TableSchema) -> str | None:
    """Pure: why the first key column cannot partition the lake tables (Iceberg's bucket transform takes no
    boolean, float or double), or None."""
    if not schema.key:
        return None  # a table without a key is unpartitioned
    first = next(c for c in schema.columns if c.name == schema.key[0])
    if first.type.kind in (Kind.BOOLEAN, Kind.FLOAT, Kind.DOUBLE):
        return f"the first key column {first.name!r} is {first.type.kind.value}: Iceberg cannot bucket it"
    return None


def _refuse_unbucketable(table: TableId, schema: TableSchema) -> None:
    reason = unbucketable_key(schema)
    if reason:
        raise TableCannotLand(reason, "declare a primary key that starts with an integer, string, decimal or temporal "
                                      f"column at the source, then run `{BOOTSTRAP.format(table=table)}`")


def _first_offsets(events: list[ChangeEvent], pick: Callable[[int, int], int] = min) -> dict[int, int]:
    """The first (or, with `pick=max`, the last) offset of the events in each partition."""
    out: dict[int, int] = {}
    for e in events:
        c = e.coordinates
        out[c.partition] = pick(c.offset, out.get(c.partition, c.offset))
    return out
