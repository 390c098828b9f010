"""The freshness contract on the real stack: `cdc ingest --until-caught-up` catches up with the source (not with
what Kafka holds when it starts), and a running consumer records, per table, the source point its changelog is
complete through -- for a busy table and for one that never changes."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from typing import Any

from cdc.bootstrap.snapshot import bootstrap
from cdc.config import Settings
from cdc.connectors import task_states
from cdc.events.model import TableId
from cdc.ingest.consumer import Ingestor
from cdc.ingest.progress import read_point
from cdc.lake import catalog as lake, state
from cdc.lake.contract import COMPLETE_THROUGH
from cdc.source import connect, quote_ident
from spark_jobs.merge import merge_table
from tests.e2e.faults_support import execute, forget


def _connector(settings: Settings, action: str) -> None:
    """Pause or resume the shared connector, and wait until its tasks say so."""
    url = f"{settings.connect.url}/connectors/{settings.connect.connector_name}/{action}"
    urllib.request.urlopen(urllib.request.Request(url, method="PUT"), timeout=10).close()  # noqa: S310 - the local stack
    want = "PAUSED" if action == "pause" else "RUNNING"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(t.state == want for t in task_states(settings)):
            return
        time.sleep(0.2)
    raise AssertionError(f"the connector did not become {want}")


def _ids(catalog: Any, table: TableId) -> set[int]:
    changelog = catalog.load_table(lake.changelog_name(table))
    return set(changelog.scan(selected_fields=("id",)).to_arrow().column("id").to_pylist())


def _tables(db: str, *names: str) -> list[TableId]:
    return [TableId(db, n) for n in names]


def test_until_caught_up_lands_what_the_source_committed_before_it_started(stack: Settings, spark: Any) -> None:
    db = f"fr_{uuid.uuid4().hex[:8]}"
    (table,) = _tables(db, "t")
    q = f"{quote_ident(db)}.t"
    execute(stack, f"CREATE DATABASE {quote_ident(db)}", f"CREATE TABLE {q} (id INT PRIMARY KEY, v INT)", f"INSERT INTO {q} VALUES (0, 0)")
    bootstrap(stack, table)
    catalog = lake.open_catalog(stack)
    try:
        _connector(stack, "pause")  # the source moves on; Kafka does not hear of it yet
        try:
            execute(stack, *(f"INSERT INTO {q} VALUES ({i}, {i})" for i in range(1, 6)))
            before = read_point(stack)
            outcome: dict[str, Any] = {}

            def drain() -> None:
                try:
                    outcome["report"] = Ingestor(stack, catalog).drain(tables=[table], through_source=True, timeout=120)
                except Exception as exc:  # noqa: BLE001 - handed to the test thread
                    outcome["error"] = exc

            worker = threading.Thread(target=drain)
            worker.start()
            time.sleep(6)
            # the Kafka end offsets seen at start hold none of the five rows: a drain to them would be over by now
            assert worker.is_alive(), outcome
        finally:
            _connector(stack, "resume")
        worker.join(timeout=150)
        assert not worker.is_alive()
        assert "error" not in outcome, outcome
        assert set(range(1, 6)) <= _ids(catalog, table)
        point = state.landed_through(catalog)[table]
        assert point.seq >= before.seq
        assert point.ts_ms >= before.ts_ms
        merge_table(spark, stack.catalog.name, db, "t")  # the base commit carries the point the slice is complete through
        summary = lake.open_catalog(stack).load_table(lake.base_name(table)).current_snapshot().summary
        assert state.Through.from_json(summary.additional_properties[COMPLETE_THROUGH]) == point
    finally:
        forget(stack, [table])


def test_a_running_consumer_keeps_busy_and_idle_tables_fresh(stack: Settings) -> None:
    db = f"fr_{uuid.uuid4().hex[:8]}"
    busy, idle = _tables(db, "busy", "idle")
    execute(stack, f"CREATE DATABASE {quote_ident(db)}",
            *(f"CREATE TABLE {quote_ident(db)}.{t.table} (id INT PRIMARY KEY, v INT)" for t in (busy, idle)),
            f"INSERT INTO {quote_ident(db)}.idle VALUES (1, 1)")
    for t in (busy, idle):
        bootstrap(stack, t)
    catalog = lake.open_catalog(stack)
    fast = stack.model_copy(update={"ingest": stack.ingest.model_copy(update={"progress_seconds": 1.0, "flush_seconds": 1.0})})
    committed: list[tuple[int, int]] = []  # (id, wall time in ms after its commit returned)
    stop = threading.Event()

    def write() -> None:
        conn = connect(stack)
        try:
            cur = conn.cursor()
            i = 0
            while not stop.is_set():
                i += 1
                cur.execute(f"INSERT INTO {quote_ident(db)}.busy VALUES (%s, %s)", (i, i))  # noqa: S608 - quoted
                conn.commit()
                committed.append((i, int(time.time() * 1000)))
                time.sleep(0.1)
        finally:
            conn.close()

    ingestor = Ingestor(fast, catalog)
    consumer = threading.Thread(target=ingestor.run, kwargs={"tables": [busy, idle]})
    writer = threading.Thread(target=write)
    consumer.start()
    writer.start()
    seen: dict[TableId, list[state.Through]] = {busy: [], idle: []}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and min(len(v) for v in seen.values()) < 3:
            points = state.landed_through(lake.open_catalog(stack))
            for t in (busy, idle):
                p = points.get(t)
                if p is not None and (not seen[t] or p != seen[t][-1]):
                    seen[t].append(p)
                    if t == busy:  # every row committed before the point's time is in the changelog already
                        before = {i for i, at in list(committed) if at < p.ts_ms}
                        assert before <= _ids(lake.open_catalog(stack), busy), sorted(before - _ids(lake.open_catalog(stack), busy))[:5]
            time.sleep(0.3)
        assert min(len(v) for v in seen.values()) >= 3, {str(t): [json.loads(p.to_json()) for p in v] for t, v in seen.items()}
        for t in (busy, idle):  # the points move on: an idle table is as fresh as a busy one
            assert [p.ts_ms for p in seen[t]] == sorted({p.ts_ms for p in seen[t]})
        assert seen[busy][-1].seq > seen[busy][0].seq
        assert len({i for i, at in committed if at < seen[busy][-1].ts_ms}) > 5  # the writer was live throughout
    finally:
        stop.set()
        writer.join(timeout=30)
        ingestor.stop()
        consumer.join(timeout=60)
        forget(stack, [busy, idle])
