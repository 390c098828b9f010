"""Pure builders of the SQL of write-audit-publish: audit branches, publishing, and the gate's own checks.

A merge writes to an audit branch of the base (and of its tombstones); the checks read the branch through
Spark; a passing branch is fast-forwarded onto `main`. Identifiers are validated and quoted here; a
branch name is plain letters, digits and `_` (it is also part of the `branch_<name>` table identifier).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cdc.lake.contract import INGESTED_AT, OP, SEQ, SOURCE_TS

try:  # as a package (cdc merge) or as a file (spark-submit spark_jobs/merge.py)
    from spark_jobs.merge_sql import IdentifierError, _literal, qualified, quote
except ImportError:  # pragma: no cover - spark-submit puts the file's folder on the path
    from merge_sql import IdentifierError, _literal, qualified, quote  # type: ignore[no-redef]

AUDIT_PREFIX = "audit_"
_BRANCH = re.compile(r"[A-Za-z0-9_]{1,200}")
_AUDIT = re.compile(AUDIT_PREFIX + r"(m?)(\d{1,20})_\d{14}")
_BUCKET = re.compile(r"bucket\((\d{1,5}), ?([A-Za-z_][A-Za-z0-9_]*)\)")


def branch_name(changelog_snapshot: int, now: datetime) -> str:
    """`audit_<changelog snapshot>_<UTC yyyymmddHHMMSS>`: which slice the branch holds and when it was made."""
    if now.utcoffset() is None:
        raise ValueError("the branch time must be timezone-aware (UTC)")
    snapshot = int(changelog_snapshot)  # Iceberg's ids are non-negative; a sign would still be a valid name
    return f"{AUDIT_PREFIX}{'m' if snapshot < 0 else ''}{abs(snapshot)}_{now.strftime('%Y%m%d%H%M%S')}"


def branch_slice(name: str) -> int | None:
    """The changelog snapshot an audit branch's name records (None for another name)."""
    found = _AUDIT.fullmatch(name)
    if not found:
        return None
    return -int(found.group(2)) if found.group(1) else int(found.group(2))


def check_branch(name: str) -> str:
    if not _BRANCH.fullmatch(name) or name == "main":
        raise IdentifierError(f"{name!r} is not an audit branch name (letters, digits and _ only, not main)")
    return name


def on_branch(table: Sequence[str], branch: str) -> tuple[str, ...]:
    """The identifier parts that read or write `table` on `branch` (Iceberg's `branch_<name>` suffix)."""
    return (*table, f"branch_{check_branch(branch)}")


def create_branch_sql(table: Sequence[str], branch: str) -> str:
    """A branch at `main`'s current snapshot."""
    return f"ALTER TABLE {qualified(*table)} CREATE BRANCH {quote(check_branch(branch))}"


def drop_branch_sql(table: Sequence[str], branch: str) -> str:
    return f"ALTER TABLE {qualified(*table)} DROP BRANCH IF EXISTS {quote(check_branch(branch))}"


def fast_forward_sql(table: Sequence[str], branch: str) -> str:
    """Move `main` to the branch's head in one metadata commit; refused when `main` is not its ancestor."""
    catalog = table[0]  # the table named with its catalog: a bare `db.t` is first tried as catalog `db` (logged)
    return (f"CALL {quote(catalog)}.system.fast_forward({_literal('.'.join(quote(p) for p in table))}, 'main', "
            f"{_literal(check_branch(branch))})")


def refs_sql(table: Sequence[str]) -> str:
    """Every branch of the table with its head snapshot."""
    return f"SELECT name, snapshot_id FROM {qualified(*table, 'refs')} WHERE type = 'BRANCH'"


def head_summary_sql(table: Sequence[str], branch: str, prop: str) -> str:
    """One summary value of the branch's head snapshot."""
    return (f"SELECT s.summary[{_literal(prop)}] FROM {qualified(*table, 'refs')} r JOIN {qualified(*table, 'snapshots')} s "
            f"ON r.snapshot_id = s.snapshot_id WHERE r.name = {_literal(check_branch(branch))}")


def merge_tombstones_sql(tombstones: Sequence[str], branch: str, key: Sequence[str]) -> str:
    """Apply a tombstones audit branch to a `main` that moved since the branch was made (the fast-forward is
    refused): the branch's tombstones `main` holds no tombstone as new as, merged so a tombstone only moves
    forward. Idempotent, as the merge's own tombstones MERGE: running it again changes nothing.
    (An anti join, not EXCEPT: Spark 4's merge-on-read MERGE fails on an EXCEPT over its own target.)"""
    if not key:
        raise IdentifierError("tombstones need at least one key column")
    main, br = qualified(*tombstones), qualified(*on_branch(tombstones, branch))
    cols = (*key, SEQ, SOURCE_TS)
    seq, ts, now = quote(SEQ), quote(SOURCE_TS), quote(INGESTED_AT)
    newer = " AND ".join([*(f"b.{quote(k)} = m.{quote(k)}" for k in key), f"b.{seq} <= m.{seq}"])
    return (
        f"MERGE INTO {main} AS t\n"
        f"USING (SELECT {', '.join(f'b.{quote(c)}' for c in cols)} FROM {br} b LEFT ANTI JOIN {main} m ON {newer}) AS s\n"
        f"ON {' AND '.join(f't.{quote(k)} = s.{quote(k)}' for k in key)}\n"
        f"WHEN MATCHED AND s.{seq} > t.{seq} THEN UPDATE SET t.{seq} = s.{seq}, t.{ts} = s.{ts}, t.{now} = current_timestamp()\n"
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(quote(c) for c in cols)}, {now}) "
        f"VALUES ({', '.join(f's.{quote(c)}' for c in cols)}, current_timestamp())"
    )


def in_main_ancestry_sql(table: Sequence[str], snapshot_id: int) -> str:
    """One row when the snapshot is (or was made) current on `main` and is still its ancestor."""
    return f"SELECT 1 FROM {qualified(*table, 'history')} WHERE is_current_ancestor AND snapshot_id = {int(snapshot_id)}"


def bucket_of(partitioning: Sequence[str]) -> tuple[int, str] | None:
    """(N, column) of a `bucket(N, column)` partition field as DESCRIBE TABLE shows it, else None."""
    for field in partitioning:
        found = _BUCKET.fullmatch(field.strip())
        if found:
            return int(found.group(1)), found.group(2)
    return None


def namespace_property(describe_rows: Sequence[tuple[str, str]], key: str) -> str | None:
    """A JSON value of a namespace property from `DESCRIBE NAMESPACE EXTENDED` rows (info_name, info_value).

    Spark prints the properties as `((k1,v1), (k2,v2))` with nothing escaped, so the value is read as
    one JSON document starting right after `(<key>,`, and returned as the exact text stored.
    """
    text = next((str(v) for n, v in describe_rows if n == "Properties"), "")
    marker = f"({key},"
    at = text.find(marker)
    if at < 0:
        return None
    start = at + len(marker)
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    return text[start:end]


# ---- the gate's checks (each returns rows only when something is wrong, or one row of numbers) ---------------


@dataclass(frozen=True)
class GatePlan:
    """What the checks of one keyed merge read: the base on `main` and on the branch, the tombstones on
    the branch, and the merge's latest-change view."""

    base: tuple[str, str, str]
    branch: str
    tombstones: tuple[str, str, str]
    latest_view: str
    key: tuple[str, ...]
    bucket: tuple[int, str] | None  # the base's bucket(N, column) partition field, if any
    purge_below: int | None = None  # the truncate floor when the merge deleted the rows below it

    def __post_init__(self) -> None:
        if not self.key:
            raise IdentifierError("the keyed checks need a key")
        for name in (*self.base, *self.tombstones, self.latest_view, *self.key):
            quote(name)
        check_branch(self.branch)
        if self.bucket is not None:
            quote(self.bucket[1])


def _fn(plan: GatePlan, alias: str) -> str:
    """The bucket function of the catalog (Iceberg's `<catalog>.system.bucket`), or one bucket for all."""
    if plan.bucket is None:
        return "0"
    return f"{quote(plan.base[0])}.system.bucket({int(plan.bucket[0])}, {alias}.{quote(plan.bucket[1])})"


def resurrected_sql(plan: GatePlan) -> str:
    """How many rows of the branch have a tombstone newer than the row (a deleted key come back)."""
    on = " AND ".join(f"t.{quote(k)} = d.{quote(k)}" for k in plan.key)
    return (f"SELECT COUNT(*) FROM {qualified(*on_branch(plan.base, plan.branch))} t "
            f"JOIN {qualified(*on_branch(plan.tombstones, plan.branch))} d ON {on} WHERE d.{quote(SEQ)} > t.{quote(SEQ)}")


def conservation_sql(plan: GatePlan) -> str:
    """Per bucket where they differ: the branch's row count and main's count + keys the slice inserts - keys it
    deletes - rows the truncate purge removes. The expected count is derived in its own SQL from main's keys,
    but from inputs the same run produced: the merge's latest-change-per-key view and the tombstones its own
    tombstones MERGE wrote to the branch. So it checks the base MERGE statement's effect on the row count; a
    mistake in the slice's derivation or the tombstones shared by both would not show here (the
    reconciliation against the source, `cdc check`, is the independent check)."""
    main, branch = qualified(*plan.base), qualified(*on_branch(plan.base, plan.branch))
    tombs = qualified(*on_branch(plan.tombstones, plan.branch))
    s_on_m = " AND ".join(f"s.{quote(k)} = m.{quote(k)}" for k in plan.key)
    l_on_d = " AND ".join(f"l.{quote(k)} = d.{quote(k)}" for k in plan.key)
    keys = ", ".join(f"l.{quote(k)}" for k in plan.key)
    seq, op = quote(SEQ), quote(OP)
    # the changes that apply: a delete, or an upsert newer than the key's tombstone (as the merge filters)
    applies = (f"SELECT {keys}, l.{op}, l.{seq} FROM {quote(plan.latest_view)} l LEFT JOIN {tombs} d ON {l_on_d} "
               f"WHERE l.{op} = 'd' OR d.{seq} IS NULL OR l.{seq} > d.{seq}")
    parts = [
        f"SELECT {_fn(plan, 'm')} AS b, 1 AS n FROM {main} m",
        f"SELECT {_fn(plan, 's')} AS b, 1 AS n FROM ({applies}) s LEFT ANTI JOIN {main} m ON {s_on_m} WHERE s.{op} <> 'd'",
        f"SELECT {_fn(plan, 'm')} AS b, -1 AS n FROM {main} m JOIN ({applies}) s ON {s_on_m} "
        f"WHERE s.{op} = 'd' AND s.{seq} > m.{seq}",
    ]
    if plan.purge_below is not None:
        parts.append(f"SELECT {_fn(plan, 'm')} AS b, -1 AS n FROM {main} m LEFT ANTI JOIN ({applies}) s ON {s_on_m} "
                     f"WHERE m.{seq} < {int(plan.purge_below)}")
    expected = " UNION ALL ".join(parts)
    return (
        f"SELECT COALESCE(e.b, a.b) AS bucket, COALESCE(e.n, 0) AS expected, COALESCE(a.n, 0) AS actual FROM "
        f"(SELECT b, SUM(n) AS n FROM ({expected}) GROUP BY b) e FULL OUTER JOIN "
        f"(SELECT {_fn(plan, 't')} AS b, COUNT(*) AS n FROM {branch} t GROUP BY 1) a ON e.b = a.b "
        f"WHERE COALESCE(e.n, 0) <> COALESCE(a.n, 0) ORDER BY 1"
    )


def multiset_conservation_sql(base: Sequence[str], branch: str, slice_view: str, keep_base: bool) -> str:
    """One row (expected, actual): the keyless base's rows before (unless a truncate emptied it) + the slice's
    added rows - its removed rows, and the branch's row count."""
    before = f"(SELECT COUNT(*) FROM {qualified(*base)})" if keep_base else "0"
    slice_ = (f"(SELECT COALESCE(SUM(CASE WHEN {quote(OP)} = 'd' THEN -1 ELSE 1 END), 0) FROM {quote(slice_view)})")
    return (f"SELECT CAST({before} + {slice_} AS BIGINT) AS expected, "
            f"(SELECT COUNT(*) FROM {qualified(*on_branch(base, branch))}) AS actual")


def results_table_sql(table: Sequence[str]) -> str:
    """The Iceberg table of gate results (one row per check per run)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified(*table)} (run_id STRING, `table` STRING, branch STRING, `check` STRING, "
        "success BOOLEAN, observed STRING, detail STRING, checked_at TIMESTAMP, published BOOLEAN) USING iceberg"
    )
