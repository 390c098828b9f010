"""The write-audit-publish and gate SQL builders, as text; the gate's pure parts; declared expectations at load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cdc.config import load_settings
from cdc.errors import ConfigError
from spark_jobs import gate_sql as g
from spark_jobs.gate import CheckResult, GateReport, expectation_name, key_expectations, schema_check
from spark_jobs.merge_sql import IdentifierError

BASE = ("lake", "shop", "orders")
TOMBS = ("lake", "shop", "orders_tombstones")
NOW = datetime(2026, 11, 26, 7, 5, 9, tzinfo=UTC)


def test_branch_name_records_the_slice_and_the_utc_time() -> None:
    name = g.branch_name(6607268640036083050, NOW)
    assert name == "audit_6607268640036083050_20261126070509"
    assert g.branch_slice(name) == 6607268640036083050
    assert g.branch_slice("audit_x") is None
    assert g.branch_slice("main") is None
    with pytest.raises(ValueError, match="timezone-aware"):
        g.branch_name(1, datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
    assert g.branch_name(5, datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))).startswith("audit_5_")


@pytest.mark.parametrize("bad", ["main", "", "a-b", "a b", "x`y", "a.b", "ä", "x" * 201])
def test_branch_names_are_plain(bad: str) -> None:
    with pytest.raises(IdentifierError):
        g.check_branch(bad)


def test_branch_statements() -> None:
    b = "audit_1_20261126070509"
    assert g.on_branch(BASE, b) == ("lake", "shop", "orders", "branch_audit_1_20261126070509")
    assert g.create_branch_sql(BASE, b) == "ALTER TABLE `lake`.`shop`.`orders` CREATE BRANCH `audit_1_20261126070509`"
    assert g.drop_branch_sql(BASE, b) == "ALTER TABLE `lake`.`shop`.`orders` DROP BRANCH IF EXISTS `audit_1_20261126070509`"
    assert g.fast_forward_sql(BASE, b) == (
        "CALL `lake`.system.fast_forward('`lake`.`shop`.`orders`', 'main', 'audit_1_20261126070509')")
    assert g.fast_forward_sql(("lake", "it's", "t"), b).startswith("CALL `lake`.system.fast_forward('`lake`.`it\\'s`.`t`'")
    assert "r.name = 'audit_1_20261126070509'" in g.head_summary_sql(BASE, b, "cdc.merged-changelog-snapshot")
    assert g.in_main_ancestry_sql(BASE, 42) == (
        "SELECT 1 FROM `lake`.`shop`.`orders`.`history` WHERE is_current_ancestor AND snapshot_id = 42")


def test_bucket_spec_from_describe() -> None:
    assert g.bucket_of(["bucket(16, id)"]) == (16, "id")
    assert g.bucket_of(["days(ts)", "bucket(4,order_id)"]) == (4, "order_id")
    assert g.bucket_of(["identity(x)"]) is None
    assert g.bucket_of([]) is None


def test_namespace_property_reads_the_exact_json_from_describe_namespace() -> None:
    key = 'cdc.landed-through.["shop","orders"]'
    value = '{"seq":"123","position":"mariadb-bin.000003:77","ts_ms":1700000000000}'
    other = '{"seq":"1","position":"x:1, y","ts_ms":2}'
    rows = [("Catalog Name", "lake"), ("Namespace Name", "cdc_state"),
            ("Properties", f'((cdc.landed-through.["shop","o"],{other}), ({key},{value}), (cdc.halted.x,{{"a": "),("}}))')]
    assert g.namespace_property(rows, key) == value
    assert g.namespace_property(rows, 'cdc.landed-through.["shop","o"]') == other
    assert g.namespace_property(rows, 'cdc.landed-through.["no","pe"]') is None
    assert g.namespace_property([("Properties", f"(({key},not json))")], key) is None
    assert g.namespace_property([], key) is None


PLAN = g.GatePlan(BASE, "audit_1_20261126070509", TOMBS, "_cdc_latest", ("id",), (16, "id"))


def test_the_tombstone_check_reads_both_branches() -> None:
    branch = "`lake`.`shop`.`orders`.`branch_audit_1_20261126070509`"
    assert g.resurrected_sql(PLAN) == (
        f"SELECT COUNT(*) FROM {branch} t JOIN `lake`.`shop`.`orders_tombstones`.`branch_audit_1_20261126070509` d "
        "ON t.`id` = d.`id` WHERE d.`_seq` > t.`_seq`")


def test_conservation_per_bucket_against_the_slice() -> None:
    sql = g.conservation_sql(PLAN)
    bucket = "`lake`.system.bucket(16, {}.`id`)"
    # main's rows, + upserts of keys main lacks, - deletes newer than main's row; the branch counted per bucket
    assert f"SELECT {bucket.format('m')} AS b, 1 AS n FROM `lake`.`shop`.`orders` m" in sql
    assert "LEFT ANTI JOIN `lake`.`shop`.`orders` m ON s.`id` = m.`id` WHERE s.`_op` <> 'd'" in sql
    assert "-1 AS n FROM `lake`.`shop`.`orders` m JOIN (" in sql
    assert "WHERE s.`_op` = 'd' AND s.`_seq` > m.`_seq`" in sql
    # the changes that apply are filtered by the branch's tombstones as the merge filters them
    assert ("FROM `_cdc_latest` l LEFT JOIN `lake`.`shop`.`orders_tombstones`.`branch_audit_1_20261126070509` d "
            "ON l.`id` = d.`id` WHERE l.`_op` = 'd' OR d.`_seq` IS NULL OR l.`_seq` > d.`_seq`") in sql
    assert f"(SELECT {bucket.format('t')} AS b, COUNT(*) AS n FROM `lake`.`shop`.`orders`.`branch_audit_1_20261126070509` t" in sql
    assert "WHERE COALESCE(e.n, 0) <> COALESCE(a.n, 0)" in sql
    assert "LEFT ANTI JOIN (" not in sql  # no purge term without a floor


def test_conservation_accounts_for_the_truncate_purge_and_tables_without_buckets() -> None:
    purged = g.conservation_sql(g.GatePlan(BASE, "audit_1_20261126070509", TOMBS, "_cdc_latest", ("a", "b"), None, 777))
    assert "LEFT ANTI JOIN (" in purged
    assert "WHERE m.`_seq` < 777" in purged
    assert "s.`a` = m.`a` AND s.`b` = m.`b`" in purged
    assert "system.bucket" not in purged  # one bucket: the whole table
    assert "SELECT 0 AS b, 1 AS n" in purged


def test_gate_plan_refuses() -> None:
    with pytest.raises(IdentifierError, match="key"):
        g.GatePlan(BASE, "audit_1_20261126070509", TOMBS, "_cdc_latest", (), None)
    with pytest.raises(IdentifierError):
        g.GatePlan(BASE, "main", TOMBS, "_cdc_latest", ("id",), None)
    with pytest.raises(IdentifierError):
        g.GatePlan(BASE, "audit_1_20261126070509", TOMBS, "_cdc_latest", ("id",), (4, "bad\x00"))


def test_multiset_conservation() -> None:
    sql = g.multiset_conservation_sql(BASE, "audit_1_20261126070509", "_cdc_multiset_slice", keep_base=True)
    assert sql == (
        "SELECT CAST((SELECT COUNT(*) FROM `lake`.`shop`.`orders`) + (SELECT COALESCE(SUM(CASE WHEN `_op` = 'd' THEN -1 "
        "ELSE 1 END), 0) FROM `_cdc_multiset_slice`) AS BIGINT) AS expected, "
        "(SELECT COUNT(*) FROM `lake`.`shop`.`orders`.`branch_audit_1_20261126070509`) AS actual")
    assert "CAST(0 + " in g.multiset_conservation_sql(BASE, "audit_1_20261126070509", "v", keep_base=False)


def test_results_table() -> None:
    assert g.results_table_sql(("lake", "cdc_quality", "gate_results")).startswith(
        "CREATE TABLE IF NOT EXISTS `lake`.`cdc_quality`.`gate_results` (run_id STRING, `table` STRING, branch STRING, "
        "`check` STRING, success BOOLEAN")


def test_schema_check() -> None:
    ok = schema_check({"id": "int", "v": "string", "_seq": "decimal(38,0)", "old": "int"},
                      {"id": "int", "v": "string", "_seq": "decimal(38,0)", "_op": "string", "_kafka_offset": "bigint"},
                      ["old"])
    assert ok.success
    bad = schema_check({"id": "int", "v": "string", "gone": "int"}, {"id": "bigint", "v": "string", "new": "int"}, [])
    assert not bad.success
    assert bad.observed == "gone only in the base; new only in the changelog; id: base int, changelog bigint"


def test_key_expectations_and_names() -> None:
    assert key_expectations(("id",)) == [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}}]
    assert key_expectations(("a", "b"))[-1] == {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["a", "b"]}}
    assert expectation_name(key_expectations(("a", "b"))[-1]) == "expect_compound_columns_to_be_unique(a,b)"
    assert expectation_name({"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}) == \
        "expect_table_row_count_to_be_between"


def test_report_names_each_failed_check() -> None:
    report = GateReport("shop.orders", "audit_1_20261126070509", "r", [
        CheckResult("schema", True, ""), CheckResult("conservation", False, "bucket 3: expected 5, found 6"),
        CheckResult("expect_column_values_to_be_between(amount)", False, "1 unexpected of 5")])
    assert not report.passed
    assert report.failed == ["conservation", "expect_column_values_to_be_between(amount)"]


@pytest.mark.parametrize(("entry", "message"), [
    ({"type": "expect_nothing_at_all"}, "unknown expectation type 'expect_nothing_at_all'"),
    ({"type": "expect_column_values_to_be_between", "kwargs": {"colum": "amount", "min_value": 0}}, "bad kwargs"),
    ({"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_value": "x"}}, "bad kwargs"),
    ({"type": "expect_column_values_to_not_be_null", "kwargs": "amount"}, "`kwargs` must be a mapping"),
    ({"kind": "expect_column_values_to_not_be_null"}, "a mapping with a `type`"),
    ({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}, "extra": 1}, "unknown keys"),
])
def test_declared_expectations_are_refused_at_load(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="tables.shop.orders.expectations") as info:
        load_settings(tables={"shop.orders": {"expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}}, entry]}})
    assert "expectations[1]" in str(info.value)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_declared_expectations_load() -> None:
    entry = {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_value": 0}}
    settings = load_settings(tables={"shop.orders": {"expectations": [entry]}})
    assert settings.table_settings("shop", "orders").expectations == [entry]
    assert settings.table_settings("shop", "other").expectations == []


def test_gx_results_are_named_by_their_expectation_not_by_position() -> None:
    """GX 1.x returns the expectations that raised first: each result is named by the id its expectation carries."""
    import pandas as pd

    from spark_jobs.gate import build_expectation, import_gx, label_results

    gx = import_gx()
    configs = [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_value": 0}},  # no such column
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "id", "max_value": 2}},  # same name, other kwargs
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "id", "max_value": 9, "meta": {"mine": 1}}},
    ]
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = {"globally": False}
    batch = ctx.data_sources.add_pandas("p").add_dataframe_asset("t").add_batch_definition_whole_dataframe("b")
    suite = ctx.suites.add(gx.ExpectationSuite(name="t", expectations=[build_expectation(c, i) for i, c in enumerate(configs)]))
    run = ctx.validation_definitions.add(gx.ValidationDefinition(name="t", data=batch, suite=suite))
    result = run.run(batch_parameters={"dataframe": pd.DataFrame({"id": [1, 2, 3]})})
    assert result.results[0].expectation_config.type == "expect_column_values_to_be_between"  # GX did reorder
    checks = label_results(result.results, configs)
    assert [(c.check, c.success) for c in checks] == [
        ("expect_column_values_to_not_be_null(id)", True),
        ("expect_column_values_to_be_unique(id)", True),
        ("expect_column_values_to_be_between(amount)", False),
        ("expect_column_values_to_be_between(id)", False),
        ("expect_column_values_to_be_between(id)", True),
    ]
    assert checks[2].observed.startswith("error: ")
    assert checks[3].observed.startswith("1 unexpected of 3")


def test_a_configured_expectation_without_a_result_fails_the_gate() -> None:
    from types import SimpleNamespace

    from spark_jobs.gate import CHECK_META, label_results

    configs = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}},
               {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}}]
    only = SimpleNamespace(expectation_config=SimpleNamespace(meta={CHECK_META: 1}, type="expect_column_values_to_be_unique"),
                           result={"unexpected_count": 0, "element_count": 3}, success=True, exception_info={})
    assert [(c.check, c.success, c.observed) for c in label_results([only], configs)] == [
        ("expect_column_values_to_not_be_null(id)", False, "no result from great-expectations"),
        ("expect_column_values_to_be_unique(id)", True, "0 unexpected of 3")]


def test_merging_a_tombstones_branch_into_a_main_that_moved() -> None:
    """When the tombstones' main moved, the branch's tombstones are merged into it: only rows main lacks, and a
    tombstone only moves forward (idempotent: running it again changes nothing)."""
    b = "audit_1_20261126070509"
    assert g.merge_tombstones_sql(TOMBS, b, ("id", "k 2")) == (
        "MERGE INTO `lake`.`shop`.`orders_tombstones` AS t\n"
        "USING (SELECT b.`id`, b.`k 2`, b.`_seq`, b.`_source_ts` FROM `lake`.`shop`.`orders_tombstones`.`branch_audit_1_20261126070509` b "
        "LEFT ANTI JOIN `lake`.`shop`.`orders_tombstones` m ON b.`id` = m.`id` AND b.`k 2` = m.`k 2` AND b.`_seq` <= m.`_seq`) AS s\n"
        "ON t.`id` = s.`id` AND t.`k 2` = s.`k 2`\n"
        "WHEN MATCHED AND s.`_seq` > t.`_seq` THEN UPDATE SET t.`_seq` = s.`_seq`, t.`_source_ts` = s.`_source_ts`, "
        "t.`_ingested_at` = current_timestamp()\n"
        "WHEN NOT MATCHED THEN INSERT (`id`, `k 2`, `_seq`, `_source_ts`, `_ingested_at`) "
        "VALUES (s.`id`, s.`k 2`, s.`_seq`, s.`_source_ts`, current_timestamp())")
    with pytest.raises(IdentifierError):
        g.merge_tombstones_sql(TOMBS, b, ())
    with pytest.raises(IdentifierError):
        g.merge_tombstones_sql(TOMBS, "main", ("id",))
