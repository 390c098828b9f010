"""Pure builders of the SQL the merge job runs. Every identifier is validated and quoted here.

The merge folds a changelog slice into its base table:
- the latest change per key wins, ordered by `_seq` (an exact DECIMAL(38,0) source position),
  ties broken by Kafka partition and offset;
- a change applies only when it is newer than the row's `_seq`, so replays and re-runs are no-ops;
- a delete removes the row; a truncate removes every row older than it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SEQ = "_seq"
SOURCE_TS = "_source_ts"
OP = "_op"
PARTITION = "_kafka_partition"
OFFSET = "_kafka_offset"
RANK = "_cdc_rank"


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
class MergePlan:
    """What a merge needs to know about one table."""

    target: tuple[str, str, str]  # catalog, namespace, table
    source_view: str
    key: tuple[str, ...]
    columns: tuple[str, ...]  # source columns of the base table, without _seq/_source_ts

    def __post_init__(self) -> None:
        if not self.key:
            raise IdentifierError("a merge needs at least one key column")
        missing = [k for k in self.key if k not in self.columns]
        if missing:
            raise IdentifierError(f"key columns {missing} are not columns of the table")
        for name in (*self.target, self.source_view, *self.columns):
            quote(name)


def latest_changes_sql(plan: MergePlan, after_seq: int | None = None) -> str:
    """One row per key: its newest change (ignoring truncates, and anything at or before `after_seq`)."""
    keys = ", ".join(f"c.{quote(k)}" for k in plan.key)
    floor = f" AND c.{quote(SEQ)} > {int(after_seq)}" if after_seq is not None else ""
    return (
        f"SELECT * FROM (SELECT c.*, ROW_NUMBER() OVER (PARTITION BY {keys} "
        f"ORDER BY c.{quote(SEQ)} DESC, c.{quote(PARTITION)} DESC, c.{quote(OFFSET)} DESC) AS {quote(RANK)} "
        f"FROM {quote(plan.source_view)} c WHERE c.{quote(OP)} <> 't'{floor}) WHERE {quote(RANK)} = 1"
    )


def merge_sql(plan: MergePlan, after_seq: int | None = None) -> str:
    """MERGE INTO the base table from the latest change per key."""
    target = qualified(*plan.target)
    on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in plan.key)
    all_cols = (*plan.columns, SEQ, SOURCE_TS)
    assignments = ", ".join(f"t.{quote(c)} = s.{quote(c)}" for c in all_cols)
    insert_cols = ", ".join(quote(c) for c in all_cols)
    insert_vals = ", ".join(f"s.{quote(c)}" for c in all_cols)
    newer = f"s.{quote(SEQ)} > t.{quote(SEQ)}"
    return (
        f"MERGE INTO {target} AS t\n"
        f"USING ({latest_changes_sql(plan, after_seq)}) AS s\n"
        f"ON {on}\n"
        f"WHEN MATCHED AND s.{quote(OP)} = 'd' AND {newer} THEN DELETE\n"
        f"WHEN MATCHED AND s.{quote(OP)} <> 'd' AND {newer} THEN UPDATE SET {assignments}\n"
        f"WHEN NOT MATCHED AND s.{quote(OP)} <> 'd' THEN INSERT ({insert_cols}) VALUES ({insert_vals})"
    )


def truncate_seq_sql(source_view: str) -> str:
    """The position of the newest truncate in the slice (NULL when there is none)."""
    return f"SELECT MAX({quote(SEQ)}) AS seq FROM {quote(source_view)} WHERE {quote(OP)} = 't'"


def truncate_sql(target: Sequence[str], seq: int) -> str:
    """Remove every row whose last change is older than a truncate at `seq`."""
    return f"DELETE FROM {qualified(*target)} WHERE {quote(SEQ)} < {int(seq)}"


def merged_upto_sql(target: Sequence[str], prop: str) -> str:
    """The changelog snapshot the newest merge of this base table recorded (walks current ancestry)."""
    snaps = qualified(*target, "snapshots")
    hist = qualified(*target, "history")
    return (
        f"SELECT s.summary[{_literal(prop)}] AS upto FROM {snaps} s JOIN {hist} h ON s.snapshot_id = h.snapshot_id "
        f"WHERE h.is_current_ancestor AND s.summary[{_literal(prop)}] IS NOT NULL "
        f"ORDER BY h.made_current_at DESC, s.committed_at DESC LIMIT 1"
    )


def _literal(text: str) -> str:
    if any(ord(ch) < 32 for ch in text):
        raise IdentifierError(f"literal {text!r} contains control characters")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
