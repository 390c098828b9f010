"""Which tables a scheduled merge is due for: the pure rule, and `cdc tables` over a real (SQLite) lake in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cdc.cli import main
from cdc.config import load_settings
from cdc.events.model import TableId
from cdc.lake import bookkeeping, catalog as lake, state
from cdc.lake.contract import MERGED_LANDED
from cdc.schedule import MINUTE_MS, TableSchedule, due, due_tables, merge_job_args, next_merge_ms

NOW = 1_800_000_000_000
T = ("a.x", "a.y", "b.z")


def test_a_never_merged_table_is_due() -> None:
    assert due(T, {}, dict.fromkeys(T, 15), NOW) == list(T)
    assert due(["a.x"], {"a.x": None}, {"a.x": 60}, NOW) == ["a.x"]


def test_due_once_its_own_interval_has_passed() -> None:
    last = {"a.x": NOW - 15 * MINUTE_MS, "a.y": NOW - 15 * MINUTE_MS + 1, "b.z": NOW - 59 * MINUTE_MS}
    assert due(T, last, {"a.x": 15, "a.y": 15, "b.z": 60}, NOW) == ["a.x"]
    assert due(T, last, {"a.x": 15, "a.y": 15, "b.z": 30}, NOW) == ["a.x", "b.z"]


def test_within_takes_what_falls_due_before_the_next_look() -> None:
    last = dict.fromkeys(T, NOW - 13 * MINUTE_MS)
    assert due(T, last, dict.fromkeys(T, 15), NOW, within_ms=2 * MINUTE_MS - 1) == []
    assert due(T, last, dict.fromkeys(T, 15), NOW, within_ms=2 * MINUTE_MS) == list(T)


def test_nothing_to_fold_in_or_halted_is_never_due() -> None:
    assert due(T, {}, dict.fromkeys(T, 15), NOW, pending={"a.x": False, "a.y": True}) == ["a.y", "b.z"]  # missing: assume so
    assert due(T, {}, dict.fromkeys(T, 15), NOW, halted={"a.y"}) == ["a.x", "b.z"]


def test_the_last_attempt_is_the_newer_of_the_published_merge_and_a_failed_gate() -> None:
    failed = TableSchedule("a.x", "streaming", 15, NOW - 60 * MINUTE_MS, NOW - 5 * MINUTE_MS, pending=True)
    assert failed.last_attempt_ms == NOW - 5 * MINUTE_MS
    assert due_tables([failed], NOW) == []  # a failing gate is retried once per interval, not on every tick
    assert due_tables([failed], NOW + 10 * MINUTE_MS) == ["a.x"]
    assert TableSchedule("a.y", "streaming", 15, None, None, pending=True).last_attempt_ms is None
    assert due_tables([TableSchedule("a.y", "halted", 15, None, None, pending=True)], NOW) == []


def test_next_merge() -> None:
    assert next_merge_ms(None, 15) is None
    assert next_merge_ms(NOW, 30) == NOW + 30 * MINUTE_MS


def test_merge_job_args_are_what_cdc_merge_passes(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rule = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "v"}}
    monkeypatch.setenv("CDC_TABLES", json.dumps({"shop.orders": {"expectations": [rule], "merge_mode": "copy-on-write"}}))
    args = merge_job_args(load_settings(), TableId("shop", "orders"))
    assert args[:4] == ["--catalog", "lake", "--tombstone-days", "7"]
    assert json.loads(args[args.index("--expectations") + 1]) == {"shop.orders": [rule]}
    assert json.loads(args[args.index("--merge-mode") + 1]) == {"shop.orders": "copy-on-write"}
    assert json.loads(merge_job_args(load_settings(), TableId("shop", "other"))[args.index("--merge-mode") + 1]) == {
        "shop.other": "merge-on-read"}  # merge.mode
    assert args[args.index("--quality-home") + 1] == str((home / "quality").resolve())
    assert args[-2:] == ["--", "shop.orders"]  # a name can never be read as an option


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


SCHEMA = pa.schema([pa.field("id", pa.int64())])


def _tables(catalog: Any, name: str) -> tuple[Any, Any]:
    changelog = catalog.create_table(("shop", name + lake.CHANGELOG_SUFFIX), schema=SCHEMA)
    return changelog, catalog.create_table(("shop", name), schema=SCHEMA)


def _rows(n: int) -> pa.Table:
    return pa.Table.from_pylist([{"id": i} for i in range(n)], schema=SCHEMA)


@pytest.fixture
def lake_tables(home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """shop.merged (merged up to its changelog), shop.behind (merged, then more landed), shop.fresh (never merged),
    shop.idle (nothing landed), shop.held (halted, changes waiting), shop.failed (merged, a gate failed now),
    shop.expired (its merge commit expired, the merged position pinned as a table property)."""
    monkeypatch.setenv("CDC_TABLES", json.dumps({"shop.behind": {"merge_interval": "1h"}}))
    catalog = lake.open_catalog(load_settings())
    catalog.create_namespace("shop")
    for name in ("merged", "behind", "failed"):
        changelog, base = _tables(catalog, name)
        changelog.append(_rows(3))
        base.append(_rows(3), snapshot_properties={lake.MERGED_UPTO: str(changelog.current_snapshot().snapshot_id)})
        if name == "behind":
            changelog.append(_rows(1))
        if name == "failed":
            changelog.append(_rows(1))
            branch = "audit_1_20260101000000"  # a failed gate's evidence: its commit is not on main
            base.manage_snapshots().create_branch(base.current_snapshot().snapshot_id, branch).commit()
            base.append(_rows(1), branch=branch)
    changelog, base = _tables(catalog, "expired")  # merged, then expiry took the merge commit: the pinned position
    changelog.append(_rows(2))
    with base.transaction() as tx:
        tx.set_properties({lake.MERGED_UPTO: str(changelog.current_snapshot().snapshot_id)})
    changelog, base = _tables(catalog, "compacted")  # merged 1 of 2 landings; then compaction + expiry of the changelog
    bookkeeping.commit(changelog, _rows(2), bookkeeping.Landing({"t": {0: 2}}, {}, 1))
    first = changelog.current_snapshot().snapshot_id
    bookkeeping.commit(changelog, _rows(1), bookkeeping.Landing({"t": {0: 3}}, {}, 2))
    with base.transaction() as tx:
        tx.set_properties({lake.MERGED_UPTO: str(first), MERGED_LANDED: "1"})
    changelog.overwrite(changelog.scan().to_arrow())
    current = changelog.current_snapshot().snapshot_id
    changelog.maintenance.expire_snapshots().by_ids([x.snapshot_id for x in changelog.snapshots() if x.snapshot_id != current]).commit()
    changelog, _ = _tables(catalog, "fresh")
    changelog.append(_rows(2))
    _tables(catalog, "idle")
    changelog, _ = _tables(catalog, "held")
    changelog.append(_rows(2))
    state.record_halt(catalog, state.halt_record(TableId("shop", "held"), "a schema change", "cdc bootstrap shop.held --rebuild",
                                                 None, None))
    return catalog


def test_cdc_tables_lists_every_table_with_its_schedule(lake_tables: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["tables", "--output", "json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    rows = {r["table"]: r for r in doc["tables"]}
    assert sorted(rows) == ["shop.behind", "shop.compacted", "shop.expired", "shop.failed", "shop.fresh", "shop.held", "shop.idle",
                            "shop.merged"]
    assert rows["shop.compacted"]["pending"] is True  # its unmerged landing survived the changelog's compaction and expiry
    assert (rows["shop.expired"]["last_merge"], rows["shop.expired"]["pending"]) == ("-", False)
    assert rows["shop.behind"]["merge_interval_minutes"] == 60
    assert rows["shop.merged"]["merge_interval_minutes"] == 15
    assert rows["shop.merged"]["last_merge"] != "-"
    assert rows["shop.merged"]["pending"] is False
    assert rows["shop.behind"]["pending"] is True
    assert rows["shop.fresh"]["last_merge"] == "-"
    assert rows["shop.fresh"]["next_merge"] == "now"
    assert rows["shop.failed"]["last_failed_gate"] != "-"
    assert rows["shop.held"]["state"] == "halted"
    # compacted: the time of its merge left with the expired snapshots, and a change waits: due now
    assert {t for t, r in rows.items() if r["due"]} == {"shop.compacted", "shop.fresh"}
    assert doc["merge_job_args"]["shop.fresh"][-1] == "shop.fresh"


def test_cdc_tables_due(lake_tables: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["tables", "--due", "--output", "json"], capsys)
    assert code == 0, err
    assert [r["table"] for r in json.loads(out)["tables"]] == ["shop.compacted", "shop.fresh"]
    # within the hour the merged-but-behind table and the failed one fall due too; nothing to do or halted never does
    code, out, err = run(["tables", "--due", "--within", "3600", "--output", "json"], capsys)
    assert code == 0, err
    assert [r["table"] for r in json.loads(out)["tables"]] == ["shop.behind", "shop.compacted", "shop.failed", "shop.fresh"]
    code, out, err = run(["tables", "--due", "shop.merged", "shop.fresh"], capsys)
    assert code == 0, err
    assert "shop.fresh" in out
    assert "shop.merged" not in out


def test_cdc_tables_refuses_what_is_not_in_the_lake(lake_tables: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["tables", "shop.nope"], capsys)
    assert code == 2
    assert "shop.nope" in err


def test_cdc_tables_over_an_empty_lake_fails(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["tables", "--due"], capsys)
    assert code == 1  # a wrong CDC_HOME or catalog must not look like "nothing due" to a scheduler
    assert "no tables in the lake" in err
