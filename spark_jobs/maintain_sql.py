"""Pure builders of the SQL the maintenance job runs: what it measures in the metadata tables, and the Iceberg
procedures it calls. Every identifier is validated and quoted here (merge_sql.quote); values are integers,
validated numbers or escaped literals.

Tables are named with their catalog (`catalog`, `db`, `table`). A procedure takes its table as one string
literal holding the quoted, fully qualified name: a bare `db.t` is first tried as catalog `db` (logged noise).
Times go in as epoch milliseconds (`timestamp_millis`), so the session's time zone does not matter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

try:  # as a package (cdc maintain) or as a file (spark-submit spark_jobs/maintain.py)
    from spark_jobs.gate_sql import AUDIT_PREFIX
    from spark_jobs.merge_sql import IdentifierError, _literal, qualified, quote
except ImportError:  # pragma: no cover - spark-submit puts the file's folder on the path
    from gate_sql import AUDIT_PREFIX  # type: ignore[no-redef,import-not-found]
    from merge_sql import IdentifierError, _literal, qualified, quote  # type: ignore[no-redef]

Ident = Sequence[str]  # catalog, namespace, table

_OPTION = re.compile(r"[a-z][a-z0-9.-]{0,80}")
_OPTION_VALUE = re.compile(r"[A-Za-z0-9._-]{1,40}")
_AUDIT_TIME = re.compile(re.escape(AUDIT_PREFIX) + r"m?\d{1,20}_(\d{14})")


def _table_arg(table: Ident) -> str:
    """The procedure's `table` argument: the quoted, catalog-qualified name as a string literal."""
    if len(table) != 3:
        raise IdentifierError(f"a table is named catalog, namespace, table: {tuple(table)!r}")
    return _literal(qualified(*table))


def _millis(at: datetime) -> str:
    if at.utcoffset() is None:
        raise ValueError("maintenance times must be timezone-aware (UTC)")
    return f"timestamp_millis({int(at.timestamp() * 1000)})"


def _options(options: Mapping[str, str]) -> str:
    """`map('k', 'v', ...)` of procedure options; keys and values are plain words (numbers, true/false)."""
    parts = []
    for k, v in sorted(options.items()):
        if not _OPTION.fullmatch(k) or not _OPTION_VALUE.fullmatch(v):
            raise IdentifierError(f"procedure option {k!r} = {v!r} is not a plain option")
        parts += [_literal(k), _literal(v)]
    return f"map({', '.join(parts)})"


def bucket_predicate(table: Ident, buckets: int, column: str, bucket: int) -> str:
    """The Spark predicate of one bucket of a `bucket(N, column)` table (Iceberg's `system.bucket` function,
    which the procedures push down to the partition)."""
    if not 0 <= int(bucket) < int(buckets):
        raise ValueError(f"bucket {bucket} is not one of {buckets}")
    return f"{quote(table[0])}.system.bucket({int(buckets)}, {quote(column)}) = {int(bucket)}"


# ---- measurements (metadata tables of `main`; a branch's metadata tables do not resolve) -----------------


def _partition(partitioned: bool, alias: str = "") -> str:
    return f"{alias}`partition`" if partitioned else "NULL"


def _group(partitioned: bool, alias: str = "") -> str:
    return f" GROUP BY {alias}`partition`" if partitioned else ""


def data_files_sql(table: Ident, small_bytes: int, partitioned: bool = True) -> str:
    """Per partition: data files, bytes, rows, and files smaller than `small_bytes` (an unpartitioned table's
    metadata tables have no `partition` column: one row)."""
    return (
        f"SELECT {_partition(partitioned)} AS p, COUNT(*) AS files, COALESCE(SUM(file_size_in_bytes), 0) AS bytes, "
        f"COALESCE(SUM(record_count), 0) AS records, "
        f"COALESCE(SUM(CASE WHEN file_size_in_bytes < {int(small_bytes)} THEN 1 ELSE 0 END), 0) AS small "
        f"FROM {qualified(*table, 'data_files')}{_group(partitioned)}"
    )


def delete_files_sql(table: Ident, partitioned: bool = True) -> str:
    """Per partition: position-delete files, bytes, and deleted positions (equality deletes are not written here)."""
    return (
        f"SELECT {_partition(partitioned)} AS p, COUNT(*) AS files, COALESCE(SUM(file_size_in_bytes), 0) AS bytes, "
        f"COALESCE(SUM(record_count), 0) AS records "
        f"FROM {qualified(*table, 'delete_files')} WHERE content = 1{_group(partitioned)}"
    )


def delete_targets_sql(table: Ident, partitioned: bool = True) -> str:
    """Per partition: the live data files the position deletes point at (a delete file whose data file is gone is
    dangling: every reader still opens it). Reads the delete files themselves: run it only where there are some."""
    return (
        f"SELECT {_partition(partitioned, 'p.')} AS p, COUNT(DISTINCT d.file_path) AS live_targets "
        f"FROM {qualified(*table, 'position_deletes')} p LEFT JOIN {qualified(*table, 'data_files')} d "
        f"ON p.file_path = d.file_path{_group(partitioned, 'p.')}"
    )


def snapshots_sql(table: Ident) -> str:
    """One row: how many snapshots the table keeps, and the oldest one's commit time."""
    return f"SELECT COUNT(*) AS n, MIN(committed_at) AS oldest FROM {qualified(*table, 'snapshots')}"


def expirable_sql(table: Ident, older_than: datetime, retain_last: int) -> str:
    """One row: snapshots committed before `older_than` that are neither among the newest `retain_last` of
    `main` nor the head of a branch or tag (what `expire_snapshots` may remove; it also keeps the ancestry a
    branch's own retention asks for, so this is an upper bound)."""
    snaps, hist, refs = qualified(*table, "snapshots"), qualified(*table, "history"), qualified(*table, "refs")
    return (
        f"SELECT COUNT(*) FROM {snaps} s WHERE s.committed_at < {_millis(older_than)} "
        f"AND s.snapshot_id NOT IN (SELECT snapshot_id FROM {refs}) "
        f"AND s.snapshot_id NOT IN (SELECT snapshot_id FROM {hist} WHERE is_current_ancestor "
        f"ORDER BY made_current_at DESC LIMIT {max(int(retain_last), 1)})"
    )


def data_manifests_sql(table: Ident) -> str:
    """One row: the data manifests and the delete manifests of the current snapshot."""
    return (f"SELECT COALESCE(SUM(CASE WHEN content = 0 THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN content = 1 THEN 1 ELSE 0 END), 0) FROM {qualified(*table, 'manifests')}")


def snapshot_time_sql(table: Ident, snapshot_id: int) -> str:
    """The commit time (ms) of one snapshot (no row when it is gone)."""
    return f"SELECT unix_millis(committed_at) FROM {qualified(*table, 'snapshots')} WHERE snapshot_id = {int(snapshot_id)}"


def audit_branch_time(name: str) -> datetime | None:
    """When a merge made its audit branch `audit_<snapshot>_<UTC yyyymmddHHMMSS>` (None for another name)."""
    found = _AUDIT_TIME.fullmatch(name)
    if not found:
        return None
    try:
        return datetime.strptime(found.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def set_properties_sql(table: Ident, props: Mapping[str, str]) -> str:
    """Set table properties in one metadata commit (no snapshot)."""
    if not props:
        raise ValueError("no properties to set")
    pairs = ", ".join(f"{_literal(k)} = {_literal(v)}" for k, v in sorted(props.items()))
    return f"ALTER TABLE {qualified(*table)} SET TBLPROPERTIES ({pairs})"


# ---- the procedures ---------------------------------------------------------------------------------------


def rewrite_data_files_sql(table: Ident, where: str | None, options: Mapping[str, str]) -> str:
    """Bin-pack the data files `where` selects (one bucket's predicate from `bucket_predicate`, or the table)."""
    args = [f"table => {_table_arg(table)}"]
    if where is not None:
        args.append(f"where => {_literal(where)}")
    args.append(f"options => {_options(options)}")
    return f"CALL {quote(table[0])}.system.rewrite_data_files({', '.join(args)})"


def rewrite_position_deletes_sql(table: Ident, where: str | None) -> str:
    """Rewrite every position-delete file `where` selects: several per data file become one, dangling ones go."""
    args = [f"table => {_table_arg(table)}"]
    if where is not None:
        args.append(f"where => {_literal(where)}")
    args.append(f"options => {_options({'rewrite-all': 'true'})}")
    return f"CALL {quote(table[0])}.system.rewrite_position_delete_files({', '.join(args)})"


def rewrite_manifests_sql(table: Ident) -> str:
    return f"CALL {quote(table[0])}.system.rewrite_manifests(table => {_table_arg(table)})"


def expire_snapshots_sql(table: Ident, older_than: datetime, retain_last: int) -> str:
    """Expire snapshots older than `older_than` but the newest `retain_last` (Iceberg keeps every snapshot a
    branch or tag references, and deletes the files only expired snapshots held)."""
    if int(retain_last) < 1:
        raise ValueError("retain_last must be at least 1")
    return (f"CALL {quote(table[0])}.system.expire_snapshots(table => {_table_arg(table)}, "
            f"older_than => {_millis(older_than)}, retain_last => {int(retain_last)})")


def remove_orphans_sql(table: Ident, older_than: datetime, dry_run: bool) -> str:
    """Files under the table's location no snapshot references, older than `older_than` (a writer's files that
    are not committed yet are younger); `dry_run` only lists them."""
    return (f"CALL {quote(table[0])}.system.remove_orphan_files(table => {_table_arg(table)}, "
            f"older_than => {_millis(older_than)}, dry_run => {'true' if dry_run else 'false'})")
