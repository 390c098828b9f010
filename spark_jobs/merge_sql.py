"""Pure builders of the SQL the merge job runs. Every identifier is validated and quoted here.

The merge folds a changelog slice into its base table:
- the latest change per key wins, ordered by `_seq` (an exact DECIMAL(38,0) source position),
  ties broken by Kafka partition and offset;
- a change applies only when it is newer than the row's `_seq`, so replays and re-runs are no-ops;
- a delete removes the row and leaves a tombstone (key, `_seq`), so an older change of that key
  replayed later cannot bring the row back; tombstones expire after a window;
- a truncate removes every row older than it, and raises a floor below which nothing applies;
- schema changes (see cdc/lake/evolution.py): a column added with a default reads that default in
  every row older than the change (the rows the merge rewrites, and the rest once, by a backfill);
  a column dropped under `dropped_columns: keep` keeps the values it had at the drop.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cdc.lake.contract import (
    INGESTED_AT,
    KAFKA_OFFSET as OFFSET,
    KAFKA_PARTITION as PARTITION,
    LATEST_VIEW,
    OP,
    RANK,
    SEQ,
    SOURCE_TS,
)


class IdentifierError(ValueError):
    """A name that cannot be used as an identifier."""


def quote(name: str) -> str:
    """A Spark SQL identifier in backticks; refuses empty names and control characters."""
    if not isinstance(name, str) or not name:
        raise IdentifierError("an identifier must be a non-empty string")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise IdentifierError(f"identifier {name!r} contains control characters")
    if len(name) > 255:
        raise IdentifierError(f"identifier {name[:40]!r}... is longer than 255 characters")
    return "`" + name.replace("`", "``") + "`"


def qualified(*parts: str) -> str:
    return ".".join(quote(p) for p in parts)


@dataclass(frozen=True)
class Default:
    """Rows older than `below` (the ADD COLUMN's position) read `literal` for `column`."""

    column: str
    below: int
    literal: str  # from `default_literal`: validated, typed


@dataclass(frozen=True)
class MergePlan:
    """What a merge needs to know about one table."""

    target: tuple[str, ...]  # catalog, namespace, table (and `branch_<name>` to write an audit branch)
    tombstones: tuple[str, ...]
    source_view: str
    key: tuple[str, ...]
    columns: tuple[str, ...]  # source columns of the base table, without _seq/_source_ts
    defaults: tuple[Default, ...] = ()
    frozen: tuple[tuple[str, int], ...] = ()  # column, position of its drop at the source

    def __post_init__(self) -> None:
        if not self.key:
            raise IdentifierError("a merge needs at least one key column")
        missing = [k for k in self.key if k not in self.columns]
        if missing:
            raise IdentifierError(f"key columns {missing} are not columns of the table")
        for name in (*self.target, *self.tombstones, self.source_view, *self.columns):
            quote(name)


def _frozen(i: int) -> tuple[str, str]:
    """The latest view's helper columns of the i-th frozen column: its value as of the drop, and whether a
    change before the drop is in the slice."""
    return f"{RANK}_frozen_{i}", f"{RANK}_frozen_{i}_seen"


def latest_changes_sql(plan: MergePlan, after_seq: int | None = None) -> str:
    """One row per key: its newest change (ignoring truncates, and anything at or before `after_seq`).
    A frozen column also gets the value of the key's newest change before its drop (NULL if that is a
    delete), so a slice that spans the drop still leaves the value the source had at the drop."""
    keys = ", ".join(f"c.{quote(k)}" for k in plan.key)
    floor = f" AND c.{quote(SEQ)} > {int(after_seq)}" if after_seq is not None else ""
    frozen = "".join(
        f", MAX_BY(CASE WHEN c.{quote(OP)} = 'd' THEN NULL ELSE c.{quote(col)} END, "
        f"CASE WHEN c.{quote(SEQ)} < {int(drop)} THEN c.{quote(SEQ)} END) OVER (PARTITION BY {keys}) AS {quote(_frozen(i)[0])}"
        f", MAX(CASE WHEN c.{quote(SEQ)} < {int(drop)} THEN 1 ELSE 0 END) OVER (PARTITION BY {keys}) AS {quote(_frozen(i)[1])}"
        for i, (col, drop) in enumerate(plan.frozen))
    return (
        f"SELECT * FROM (SELECT c.*{frozen}, ROW_NUMBER() OVER (PARTITION BY {keys} "
        f"ORDER BY c.{quote(SEQ)} DESC, c.{quote(PARTITION)} DESC, c.{quote(OFFSET)} DESC) AS {quote(RANK)} "
        f"FROM {quote(plan.source_view)} c WHERE c.{quote(OP)} <> 't'{floor}) WHERE {quote(RANK)} = 1"
    )


def tombstones_sql(plan: MergePlan, latest_view: str = LATEST_VIEW) -> str:
    """Record each key whose latest change is a delete (idempotent: a tombstone only moves forward). `_ingested_at`
    is when the delete reached the lake: tombstones expire by it, so a delete that lands late still blocks older
    changes for the whole window."""
    target = qualified(*plan.tombstones)
    on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in plan.key)
    cols = (*plan.key, SEQ, SOURCE_TS)
    select = ", ".join(quote(c) for c in cols)
    now = quote(INGESTED_AT)
    return (
        f"MERGE INTO {target} AS t\n"
        f"USING (SELECT {select} FROM {quote(latest_view)} WHERE {quote(OP)} = 'd') AS s\n"
        f"ON {on}\n"
        f"WHEN MATCHED AND s.{quote(SEQ)} > t.{quote(SEQ)} THEN UPDATE SET "
        f"t.{quote(SEQ)} = s.{quote(SEQ)}, t.{quote(SOURCE_TS)} = s.{quote(SOURCE_TS)}, t.{now} = current_timestamp()\n"
        f"WHEN NOT MATCHED THEN INSERT ({select}, {now}) VALUES ({', '.join(f's.{quote(c)}' for c in cols)}, current_timestamp())"
    )


def expire_tombstones_sql(plan: MergePlan, days: int) -> str:
    """Forget tombstones that have been in the lake longer than the window in which a late replay can still
    arrive (lake time: a tombstone from before `_ingested_at` existed ages by its source time)."""
    since = f"coalesce({quote(INGESTED_AT)}, {quote(SOURCE_TS)})"
    return f"DELETE FROM {qualified(*plan.tombstones)} WHERE {since} < current_timestamp() - INTERVAL {int(days)} DAYS"


def _value(plan: MergePlan, column: str) -> str:
    """The value a change gives `column`: its default when the change is older than the column; for a frozen
    column, the value as of its drop."""
    frozen = next((i for i, (c, _) in enumerate(plan.frozen) if c == column), None)
    if frozen is not None:
        value, seen = _frozen(frozen)
        return f"CASE WHEN s.{quote(seen)} = 1 THEN s.{quote(value)} END"
    default = next((d for d in plan.defaults if d.column == column), None)
    if default is None:
        return f"s.{quote(column)}"
    return f"CASE WHEN s.{quote(SEQ)} < {int(default.below)} THEN {default.literal} ELSE s.{quote(column)} END"


def _assignment(plan: MergePlan, column: str) -> str:
    frozen = next((i for i, (c, _) in enumerate(plan.frozen) if c == column), None)
    if frozen is not None:  # only changes from before the drop still set it
        value, seen = _frozen(frozen)
        return f"t.{quote(column)} = CASE WHEN s.{quote(seen)} = 1 THEN s.{quote(value)} ELSE t.{quote(column)} END"
    return f"t.{quote(column)} = {_value(plan, column)}"


def pending_defaults(plan: MergePlan) -> str | None:
    """A predicate on base rows (alias t) older than an added column that do not read its default yet."""
    if not plan.defaults:
        return None
    return " OR ".join(f"(t.{quote(SEQ)} < {int(d.below)} AND t.{quote(d.column)} IS NULL)" for d in plan.defaults)


def _backfill(plan: MergePlan) -> str:
    return ", ".join(
        f"t.{quote(d.column)} = CASE WHEN t.{quote(SEQ)} < {int(d.below)} AND t.{quote(d.column)} IS NULL "
        f"THEN {d.literal} ELSE t.{quote(d.column)} END" for d in plan.defaults)


def pending_defaults_sql(plan: MergePlan) -> str | None:
    """One row when some base row still lacks a default it should read."""
    pending = pending_defaults(plan)
    return None if pending is None else f"SELECT 1 FROM {qualified(*plan.target)} t WHERE {pending} LIMIT 1"


MERGE_MODES = ("merge-on-read", "copy-on-write")
# Iceberg's table properties that decide how a MERGE, an UPDATE and a DELETE write: the base's follow its merge mode
WRITE_MODE_PROPERTIES = ("write.merge.mode", "write.update.mode", "write.delete.mode")


@dataclass(frozen=True)
class TargetBuckets:
    """The base buckets the changes touch: `bucket(count, column)` of their keys, as the base's own partition spec
    buckets it (`column` a key column) and computed by the catalog's `system.bucket`, Iceberg's bucket transform
    itself. A changed key's base row has the key's value, hence the same bucket: no row the MERGE needs is left out."""

    catalog: str
    count: int
    column: str
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        quote(self.catalog)
        quote(self.column)
        if not self.values:
            raise ValueError("no bucket to read")
        if any(not 0 <= int(v) < int(self.count) for v in self.values):
            raise ValueError(f"buckets {list(self.values)} are not all in [0, {self.count})")

    def predicate(self, alias: str = "t") -> str:
        values = ", ".join(str(int(v)) for v in sorted(set(self.values)))
        return f"{qualified(self.catalog, 'system', 'bucket')}({int(self.count)}, {alias}.{quote(self.column)}) IN ({values})"


def changed_buckets_sql(catalog: str, count: int, column: str, latest_view: str = LATEST_VIEW) -> str:
    """The buckets of the changed keys (`TargetBuckets.values`), with the base's bucket transform."""
    fn = qualified(catalog, "system", "bucket")
    return (f"SELECT DISTINCT {fn}({int(count)}, {quote(column)}) AS b FROM {quote(latest_view)} "
            f"WHERE {quote(column)} IS NOT NULL")


def write_mode_sql(target: Sequence[str], mode: str) -> str:
    """Set the base's write-mode properties to `mode` (one metadata commit, no snapshot)."""
    if mode not in MERGE_MODES:
        raise ValueError(f"a merge mode is one of {', '.join(MERGE_MODES)}, not {mode!r}")
    pairs = ", ".join(f"{_literal(p)} = {_literal(mode)}" for p in WRITE_MODE_PROPERTIES)
    return f"ALTER TABLE {qualified(*target)} SET TBLPROPERTIES ({pairs})"


def merge_sql(plan: MergePlan, latest_view: str = LATEST_VIEW, purge_below: int | None = None, backfill: bool = False,
              buckets: TargetBuckets | None = None) -> str:
    """MERGE INTO the base table from the latest change per key, unless a newer tombstone stands.

    `purge_below`: a truncate floor with rows still below it; they are deleted in the same commit
    (one publish: `main` never shows the truncate without the changes that follow it).
    `backfill`: rows older than an added column still lack its default; they get it in the same commit.
    `buckets`: read only these buckets of the base: a condition on the target alone in ON, which Iceberg pushes
    down to the base's scan as a partition filter (files of other buckets are not read). Not with a NOT MATCHED
    BY SOURCE clause (a truncate floor's purge, a backfill): those need every row of the base.
    """
    target = qualified(*plan.target)
    on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in plan.key)
    if buckets is not None:
        if buckets.column not in plan.key:
            raise IdentifierError(f"the bucket column {buckets.column!r} is not a key column: a row could leave its bucket")
        if purge_below is not None or (backfill and plan.defaults):
            raise ValueError("a MERGE that purges or backfills reads every bucket of the base")
        on += f" AND {buckets.predicate()}"
    all_cols = (*plan.columns, SEQ, SOURCE_TS)
    assignments = ", ".join(_assignment(plan, c) for c in all_cols)
    insert_cols = ", ".join(quote(c) for c in all_cols)
    insert_vals = ", ".join(_value(plan, c) for c in all_cols)
    pending = pending_defaults(plan)
    newer = f"s.{quote(SEQ)} > t.{quote(SEQ)}"
    tomb_on = " AND ".join(f"l.{quote(k)} = d.{quote(k)}" for k in plan.key)
    source = (
        f"SELECT l.* FROM {quote(latest_view)} l LEFT JOIN {qualified(*plan.tombstones)} d ON {tomb_on} "
        f"WHERE l.{quote(OP)} = 'd' OR d.{quote(SEQ)} IS NULL OR l.{quote(SEQ)} > d.{quote(SEQ)}"
    )
    return (
        f"MERGE INTO {target} AS t\n"
        f"USING ({source}) AS s\n"
        f"ON {on}\n"
        f"WHEN MATCHED AND s.{quote(OP)} = 'd' AND {newer} THEN DELETE\n"
        f"WHEN MATCHED AND s.{quote(OP)} <> 'd' AND {newer} THEN UPDATE SET {assignments}\n"
        + (f"WHEN MATCHED AND ({pending}) THEN UPDATE SET {_backfill(plan)}\n" if pending else "")
        + f"WHEN NOT MATCHED AND s.{quote(OP)} <> 'd' THEN INSERT ({insert_cols}) VALUES ({insert_vals})"
        + (f"\nWHEN NOT MATCHED BY SOURCE AND t.{quote(SEQ)} < {int(purge_below)} THEN DELETE" if purge_below is not None else "")
        + (f"\nWHEN NOT MATCHED BY SOURCE AND ({pending}) THEN UPDATE SET {_backfill(plan)}" if backfill and pending else "")
    )


def truncate_seq_sql(source_view: str) -> str:
    """The position of the newest truncate in the slice (NULL when there is none)."""
    return f"SELECT MAX({quote(SEQ)}) AS seq FROM {quote(source_view)} WHERE {quote(OP)} = 't'"


def below_floor_sql(target: Sequence[str], seq: int) -> str:
    """One row when some row's last change is older than a truncate at `seq` (files pruned by `_seq` bounds)."""
    return f"SELECT 1 FROM {qualified(*target)} WHERE {quote(SEQ)} < {int(seq)} LIMIT 1"


def merged_upto_sql(target: Sequence[str], prop: str) -> str:
    """The changelog snapshot the newest merge of this base table recorded (walks current ancestry)."""
    snaps = qualified(*target, "snapshots")
    hist = qualified(*target, "history")
    return (
        f"SELECT s.summary[{_literal(prop)}] AS upto FROM {snaps} s JOIN {hist} h ON s.snapshot_id = h.snapshot_id "
        f"WHERE h.is_current_ancestor AND s.summary[{_literal(prop)}] IS NOT NULL "
        f"ORDER BY h.made_current_at DESC, s.committed_at DESC LIMIT 1"
    )


_INT = re.compile(r"-?\d{1,40}")
_DECIMAL = re.compile(r"-?\d{1,40}(\.\d{1,40})?")
_FLOAT = re.compile(r"-?(\d+(\.\d*)?([eE][-+]?\d+)?|inf|nan)")
_DATE = re.compile(r"-?\d{4,6}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(r"-?\d{4,6}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?")
_HEX = re.compile(r"([0-9a-f]{2})*")
_DECIMAL_TYPE = re.compile(r"decimal\((\d{1,2}), ?(\d{1,2})\)")
_SIMPLE = {"int": "INT", "long": "BIGINT", "float": "FLOAT", "double": "DOUBLE"}


def default_literal(iceberg_type: str, text: str) -> str:
    """A typed Spark SQL literal for a column default recorded as (Iceberg type, text); refuses what
    does not look like a value of that type (the text comes from a table property)."""
    def check(pattern: re.Pattern[str]) -> str:
        if not pattern.fullmatch(text):
            raise IdentifierError(f"{text!r} is not a {iceberg_type} default")
        return text

    if iceberg_type in ("int", "long"):
        return f"CAST({check(_INT)} AS {_SIMPLE[iceberg_type]})"
    if iceberg_type in ("float", "double"):
        value = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}.get(check(_FLOAT), text)
        return f"CAST('{value}' AS {_SIMPLE[iceberg_type]})"
    decimal = _DECIMAL_TYPE.fullmatch(iceberg_type)
    if decimal:
        return f"CAST('{check(_DECIMAL)}' AS DECIMAL({int(decimal.group(1))}, {int(decimal.group(2))}))"
    if iceberg_type == "boolean":
        return {"true": "TRUE", "false": "FALSE"}[check(re.compile("true|false"))]
    if iceberg_type == "string":
        return _string_literal(text)
    if iceberg_type == "binary":
        return f"X'{check(_HEX)}'"
    if iceberg_type == "date":
        return f"DATE '{check(_DATE)}'"
    if iceberg_type == "timestamp":
        return f"TIMESTAMP_NTZ '{check(_TIMESTAMP)}'"
    if iceberg_type == "timestamptz":
        return f"TIMESTAMP '{check(_TIMESTAMP)}Z'"
    raise IdentifierError(f"no default literal for the type {iceberg_type!r}")


def _string_literal(text: str) -> str:
    """Any text as a Spark string literal (backslash escapes; other control characters refused)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    if any(ord(ch) < 32 for ch in escaped):
        raise IdentifierError(f"default {text!r} contains control characters")
    return "'" + escaped + "'"


def _literal(text: str) -> str:
    if any(ord(ch) < 32 for ch in text):
        raise IdentifierError(f"literal {text!r} contains control characters")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def set_properties_sql(target: Sequence[str], props: dict[str, str]) -> str:
    """Set table properties in one metadata commit (no snapshot)."""
    pairs = ", ".join(f"{_literal(k)} = {_literal(v)}" for k, v in sorted(props.items()))
    return f"ALTER TABLE {qualified(*target)} SET TBLPROPERTIES ({pairs})"


def snapshot_exists_sql(target: Sequence[str], snapshot_id: int) -> str:
    return f"SELECT 1 FROM {qualified(*target, 'snapshots')} WHERE snapshot_id = {int(snapshot_id)}"


_COLUMN_TYPES = frozenset({"TIMESTAMP", "BIGINT"})


def add_column_sql(target: Sequence[str], column: str, sql_type: str) -> str:
    if sql_type not in _COLUMN_TYPES:
        raise IdentifierError(f"not a column type the merge adds: {sql_type!r}")
    return f"ALTER TABLE {qualified(*target)} ADD COLUMN {quote(column)} {sql_type}"
