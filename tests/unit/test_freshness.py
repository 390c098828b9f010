"""The freshness contract's pure parts, and `cdc status --max-lag` on a temporary lake (no services)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pytest

from cdc.cli import main
from cdc.config import load_settings
from cdc.connectors import covers, gtid_position
from cdc.events.model import TableId
from cdc.ingest.progress import Probe, SourcePoint, through_tables
from cdc.lake import catalog as lake, state
from cdc.status import TableStatus, stale

NOW = 1_800_000_000_000
POINT = SourcePoint("mysql-bin.000003", 1234, {0: 77}, NOW - 5_000)
A, B, C = TableId("shop", "a"), TableId("shop", "b"), TableId("shop", "c")


def test_the_point_orders_by_binlog_file_then_position() -> None:
    later_file = SourcePoint("mysql-bin.000004", 4, {}, NOW)
    assert later_file.seq > POINT.seq
    assert SourcePoint("mysql-bin.000003", 1235, {}, NOW).seq > POINT.seq
    assert POINT.through.position == "mysql-bin.000003:1234"
    assert state.Through.from_json(POINT.through.to_json()) == POINT.through


def test_gtid_coverage_is_per_domain() -> None:
    assert covers(gtid_position("0-1-80,1-2-5"), {0: 77})
    assert not covers(gtid_position("0-1-76"), {0: 77})
    assert not covers(gtid_position("0-1-90"), {0: 77, 1: 1})
    assert covers({}, {})


def test_a_table_is_through_once_every_partition_it_owns_landed_up_to_the_ends() -> None:
    probe = Probe(POINT, {("t.a", 0): 10, ("t.b", 0): 7, ("t.b", 1): 3})
    topics = {A: "t.a", B: "t.b", C: "t.c"}
    mine = {("t.a", 0), ("t.b", 0), ("t.b", 1)}
    landed = {("t.a", 0): 10, ("t.b", 0): 7, ("t.b", 1): 2}
    assert through_tables(probe, topics, landed, mine.__contains__) == [A, C]  # c: no topic, no change in Kafka
    landed[("t.b", 1)] = 3
    assert through_tables(probe, topics, landed, mine.__contains__) == [A, B, C]
    # a partition owned by another consumer: that consumer records the table, not this one
    assert through_tables(probe, topics, landed, {("t.a", 0), ("t.b", 0)}.__contains__) == [A, C]


def _status(age_ms: int | None) -> TableStatus:
    point = None if age_ms is None else state.Through(1, "f:1", NOW - age_ms)
    return TableStatus(A, str(A), "streaming", complete_through=point)


def test_stale_names_tables_older_than_the_limit_and_those_never_complete() -> None:
    assert stale([_status(60_000)], 1800, NOW) == []
    late = stale([_status(3_600_000), _status(None)], 1800, NOW)
    assert len(late) == 2
    assert "3600 s ago (limit 1800 s)" in late[0]
    assert "no complete-through point" in late[1]


def _run(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capfd.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_status_max_lag_exit_codes_and_json(home: Path, capfd: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")  # lag unknown: said, not fatal
    catalog = lake.open_catalog(load_settings())
    catalog.create_namespace("shop")
    schema = pa.schema([pa.field("id", pa.int64())])
    catalog.create_table(("shop", "a" + lake.CHANGELOG_SUFFIX), schema=schema)
    catalog.create_table(("shop", "a"), schema=schema)
    now = int(time.time() * 1000)
    state.record_landed_through(catalog, {A: state.Through(10**30, "mysql-bin.000001:4", now - 120_000)})
    code, out, err = _run(["status", "--max-lag", "30m", "--output", "json"], capfd)
    assert code == 0, err
    doc = json.loads(out)
    (row,) = doc["tables"]
    assert row["complete_through"]["position"] == "mysql-bin.000001:4"  # nothing unmerged: the landed point holds
    assert 100 <= row["complete_through"]["age_seconds"] < 1000
    assert row["unmerged"] == 0
    assert row["kafka_lag"] is None
    assert any("Kafka lag unknown" in m for m in doc["messages"])
    assert doc["stale"] == []
    code, out, err = _run(["status", "--max-lag", "1m"], capfd)
    assert code == 1
    assert "stale: shop.a: complete through mysql-bin.000001:4" in err
    assert err.strip().splitlines()[-1] == "error: 1 table(s) staler than 1m"
    code, _, err = _run(["status", "--max-lag", "soon"], capfd)
    assert code == 2
    assert "expected a duration like 90s, 30m, 2h or 1d" in err
