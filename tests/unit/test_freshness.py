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
from cdc.lake.contract import BOOTSTRAP_POSITION
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
    base = catalog.create_table(("shop", "a"), schema=schema)
    now = int(time.time() * 1000)
    state.record_landed_through(catalog, {A: state.Through(10**30, "mysql-bin.000001:4", now - 120_000)})
    code, out, err = _run(["status", "--max-lag", "30m", "--output", "json"], capfd)
    assert code == 1  # a base no bootstrap has published yet is complete through nothing, whatever the changelog says
    assert json.loads(out)["tables"][0]["complete_through"] is None
    assert "stale: shop.a: no complete-through point recorded yet" in err
    base.append(pa.table({"id": pa.array([1], pa.int64())}), snapshot_properties={BOOTSTRAP_POSITION: "mysql-bin.000001:4"})
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


def test_an_idle_source_gets_markers_once_not_on_every_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Debezium's offset names the transactions completed before its record, so the last one before an idle
    moment is covered only by a later record: the probe writes markers A and B once; later probes that find
    nothing but B since are covered without writing again (review finding: markers every 15 s, forever)."""
    from cdc.ingest import progress

    src = {"seq": 100}
    committed = {"seq": 99}
    markers = []

    def markers_now(_settings: object) -> progress.Covered:
        markers.append(src["seq"])
        src["seq"] += 2  # A, then B
        committed["seq"] = src["seq"] - 1  # B's record carries A
        return progress.Covered(SourcePoint("bin.000001", 1, {0: src["seq"] - 1}, 0), {0: src["seq"]})

    monkeypatch.setattr(progress, "read_point", lambda _s: SourcePoint("bin.000001", 2, {0: src["seq"]}, 0))
    monkeypatch.setattr(progress, "_markers", markers_now)
    monkeypatch.setattr(progress, "committed_gtids", lambda _s: {0: committed["seq"]})
    monkeypatch.setattr(progress, "end_offsets", lambda admin, topics, timeout=10.0: {})
    monkeypatch.setattr(progress, "data_partitions", lambda admin, f, timeout=10.0: {})
    monkeypatch.setattr(progress, "MARKERS_AFTER_SECONDS", -1.0)
    monkeypatch.setattr(progress.time, "sleep", lambda _s: None)
    previous = None
    points = []
    for _ in range(5):
        settled = progress.settle(None, None, lambda _t: True, 60.0, None, previous)
        assert settled is not None
        probe, previous = settled
        points.append(probe.point.gtids[0])
    assert markers == [100]
    assert points == [101, 102, 102, 102, 102]  # after the markers, the point is the source's own, unmoved
    src["seq"] += 1  # a real transaction: covered only once Connect commits past it
    committed["seq"] = src["seq"]
    settled = progress.settle(None, None, lambda _t: True, 60.0, None, previous)
    assert settled is not None
    assert settled[0].point.gtids[0] == 103
    assert markers == [100]
