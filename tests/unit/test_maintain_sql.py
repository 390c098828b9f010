"""The maintenance job's SQL, as text: measurements from the metadata tables and the Iceberg procedures, with every
identifier quoted, options and times checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from spark_jobs import maintain_sql as m
from spark_jobs.merge_sql import IdentifierError

T = ("lake", "shop", "orders")
AT = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
MS = int(AT.timestamp() * 1000)


def test_bucket_predicate_uses_the_catalogs_bucket_function() -> None:
    assert m.bucket_predicate(T, 16, "id", 3) == "`lake`.system.bucket(16, `id`) = 3"
    assert m.bucket_predicate(("c`x", "d", "t"), 4, "we`ird", 0) == "`c``x`.system.bucket(4, `we``ird`) = 0"
    with pytest.raises(ValueError, match="bucket 16 is not one of 16"):
        m.bucket_predicate(T, 16, "id", 16)


def test_rewrite_data_files_per_bucket() -> None:
    where = m.bucket_predicate(T, 16, "id", 3)
    sql = m.rewrite_data_files_sql(T, where, {"min-input-files": "2", "target-file-size-bytes": "134217728"})
    assert sql == ("CALL `lake`.system.rewrite_data_files(table => '`lake`.`shop`.`orders`', "
                   "where => '`lake`.system.bucket(16, `id`) = 3', "
                   "options => map('min-input-files', '2', 'target-file-size-bytes', '134217728'))")
    assert "where" not in m.rewrite_data_files_sql(T, None, {"rewrite-all": "true"})


def test_a_quote_in_a_name_cannot_leave_the_string_literal() -> None:
    sql = m.rewrite_data_files_sql(("lake", "sh'op", "o;rders"), None, {})
    assert "table => '`lake`.`sh\\'op`.`o;rders`'" in sql
    with pytest.raises(IdentifierError):
        m.rewrite_manifests_sql(("lake", "a\nb", "t"))
    with pytest.raises(IdentifierError):
        m.rewrite_manifests_sql(("shop", "orders"))  # the catalog is part of the name


@pytest.mark.parametrize(("key", "value"), [("min-input-files", "2'); DROP"), ("Bad Key", "1"), ("k", "")])
def test_options_are_plain_words(key: str, value: str) -> None:
    with pytest.raises(IdentifierError, match="not a plain option"):
        m.rewrite_data_files_sql(T, None, {key: value})


def test_position_deletes_rewrite_all_in_the_bucket() -> None:
    assert m.rewrite_position_deletes_sql(T, "`lake`.system.bucket(4, `id`) = 1") == (
        "CALL `lake`.system.rewrite_position_delete_files(table => '`lake`.`shop`.`orders`', "
        "where => '`lake`.system.bucket(4, `id`) = 1', options => map('rewrite-all', 'true'))")


def test_expire_orphans_and_manifests() -> None:
    assert m.expire_snapshots_sql(T, AT, 10) == (
        f"CALL `lake`.system.expire_snapshots(table => '`lake`.`shop`.`orders`', older_than => timestamp_millis({MS}), "
        "retain_last => 10)")
    assert m.remove_orphans_sql(T, AT, dry_run=True) == (
        f"CALL `lake`.system.remove_orphan_files(table => '`lake`.`shop`.`orders`', older_than => timestamp_millis({MS}), "
        "dry_run => true)")
    assert m.remove_orphans_sql(T, AT, dry_run=False).endswith("dry_run => false)")
    assert m.rewrite_manifests_sql(T) == "CALL `lake`.system.rewrite_manifests(table => '`lake`.`shop`.`orders`')"
    with pytest.raises(ValueError, match="at least 1"):
        m.expire_snapshots_sql(T, AT, 0)


def test_times_are_epoch_millis_of_aware_datetimes() -> None:
    berlin = AT.astimezone(timezone(timedelta(hours=1)))
    assert m.expire_snapshots_sql(T, berlin, 1) == m.expire_snapshots_sql(T, AT, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        m.expire_snapshots_sql(T, datetime(2026, 11, 26), 1)  # noqa: DTZ001


def test_measurements_read_the_metadata_tables_of_main() -> None:
    assert m.data_files_sql(T, 100) == (
        "SELECT `partition` AS p, COUNT(*) AS files, COALESCE(SUM(file_size_in_bytes), 0) AS bytes, "
        "COALESCE(SUM(record_count), 0) AS records, COALESCE(SUM(CASE WHEN file_size_in_bytes < 100 THEN 1 ELSE 0 END), 0) "
        "AS small FROM `lake`.`shop`.`orders`.`data_files` GROUP BY `partition`")
    assert m.data_files_sql(T, 100, partitioned=False).startswith("SELECT NULL AS p,")
    assert "GROUP BY" not in m.data_files_sql(T, 100, partitioned=False)
    assert m.delete_files_sql(T) == (
        "SELECT `partition` AS p, COUNT(*) AS files, COALESCE(SUM(file_size_in_bytes), 0) AS bytes, "
        "COALESCE(SUM(record_count), 0) AS records FROM `lake`.`shop`.`orders`.`delete_files` WHERE content = 1 "
        "GROUP BY `partition`")
    assert m.delete_targets_sql(T) == (
        "SELECT p.`partition` AS p, COUNT(DISTINCT d.file_path) AS live_targets FROM `lake`.`shop`.`orders`.`position_deletes` p "
        "LEFT JOIN `lake`.`shop`.`orders`.`data_files` d ON p.file_path = d.file_path GROUP BY p.`partition`")
    assert m.data_manifests_sql(T).endswith("FROM `lake`.`shop`.`orders`.`manifests`")
    assert m.snapshots_sql(T) == "SELECT COUNT(*) AS n, MIN(committed_at) AS oldest FROM `lake`.`shop`.`orders`.`snapshots`"


def test_expirable_snapshots_exclude_the_newest_of_main_and_branch_heads() -> None:
    sql = m.expirable_sql(T, AT, 3)
    assert sql == (
        f"SELECT COUNT(*) FROM `lake`.`shop`.`orders`.`snapshots` s WHERE s.committed_at < timestamp_millis({MS}) "
        "AND s.snapshot_id NOT IN (SELECT snapshot_id FROM `lake`.`shop`.`orders`.`refs`) "
        "AND s.snapshot_id NOT IN (SELECT snapshot_id FROM `lake`.`shop`.`orders`.`history` WHERE is_current_ancestor "
        "ORDER BY made_current_at DESC LIMIT 3)")


def test_snapshot_time() -> None:
    assert m.snapshot_time_sql(T, 42) == "SELECT unix_millis(committed_at) FROM `lake`.`shop`.`orders`.`snapshots` WHERE snapshot_id = 42"


@pytest.mark.parametrize(("name", "when"), [
    ("audit_123_20261126070000", AT),
    ("audit_m5_20261126070000", AT),
    ("audit_123_20261326070000", None),  # month 13
    ("audit_123_2026112607", None),
    ("main", None),
    ("evidence_20261126070000", None),
])
def test_audit_branch_time(name: str, when: datetime | None) -> None:
    assert m.audit_branch_time(name) == when


def test_bookkeeping_is_pinned_in_one_metadata_commit() -> None:
    assert m.set_properties_sql(T, {"cdc.merged-landed": "7", "cdc.complete-through": '{"seq": "1\'2"}'}) == (
        "ALTER TABLE `lake`.`shop`.`orders` SET TBLPROPERTIES ('cdc.complete-through' = '{\"seq\": \"1\\'2\"}', "
        "'cdc.merged-landed' = '7')")
    with pytest.raises(ValueError, match="no properties"):
        m.set_properties_sql(T, {})
