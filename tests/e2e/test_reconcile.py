"""Reconciliation at a consistent source position (issue 11, item 3) on the real stack: both engines compute
the same canonical text for every type of the zoo, `cdc check` names rows changed outside the binlog and
`cdc repair` + `cdc merge` make the table equal, and checks under a live writer never false-alarm."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import duckdb
import pytest
from pyiceberg.expressions import GreaterThanOrEqual

from cdc import connectors
from cdc.bootstrap.snapshot import bootstrap
from cdc.bootstrap.source_schema import COLUMNS_QUERY, source_column
from cdc.cli import main
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.ingest.commit import landed_offsets
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake
from cdc.lake.contract import KAFKA_OFFSET, KAFKA_PARTITION, KAFKA_TOPIC, SEQ
from cdc.quality import checksum_sql as cs
from cdc.quality.reconcile import check_table, check_tables, compared_columns
from cdc.quality.repair import REPAIR_TOPIC
from cdc.source import connect, quote_ident
from cdc.verify import compare_table
from spark_jobs.merge import merge_table
from tests.e2e import type_zoo
from tests.e2e.faults_support import Writer, create_tables, execute, forget, write_some

pytestmark = pytest.mark.e2e


@contextmanager
def consuming(settings: Settings, tables: Sequence[TableId]) -> Iterator[Ingestor]:
    """`cdc ingest` of these tables' topics in a thread, recording their landed-through point every second."""
    fast = settings.model_copy(deep=True)
    fast.ingest.progress_seconds = 1.0
    ingestor = Ingestor(fast, lake.open_catalog(fast))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            ingestor.run(tables=tables)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield ingestor
    finally:
        ingestor.stop()
        thread.join(timeout=60)
    if failure:
        raise failure[0]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def _per_column_sums(settings: Settings, table: TableId) -> tuple[dict[str, int], dict[str, int]]:
    """Sum over the rows of each column's hash and of the row's, computed by MariaDB and by DuckDB over the base."""
    catalog = lake.open_catalog(settings)
    base = catalog.load_table(lake.base_name(table))
    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(COLUMNS_QUERY, (table.db, table.table))
        source = {c.name: c for c in map(source_column, cur.fetchall())}
        columns, differ = compared_columns(base.schema().fields, source, set())
        assert not differ
        parts = {c.name: cs.encoded([cs.source_text(c)], cs.MARIA) for c in columns}
        parts["<row>"] = cs.encoded([cs.source_text(c) for c in columns], cs.MARIA)
        sums = ", ".join(f"SUM({cs.MARIA.hex_int(cs.MARIA.substr(cs.MARIA.md5(f'CONVERT({p} USING utf8mb4)'), 1, 15))})"
                         for p in parts.values())
        cur.execute("SET SESSION time_zone = '+00:00'")
        cur.execute(f"SELECT {sums} FROM {cs.source_table(table.db, table.table)}")  # noqa: S608 - built here
        src = dict(zip(parts, (int(v) for v in cur.fetchone()), strict=True))
    finally:
        conn.close()
    lake_parts = {c.name: cs.encoded([cs.lake_text(c)], cs.DUCK) for c in columns}
    lake_parts["<row>"] = cs.encoded([cs.lake_text(c) for c in columns], cs.DUCK)
    con = duckdb.connect()
    con.register("zoo_rows", base.scan(selected_fields=tuple(c.name for c in columns)).to_arrow())
    sums = ", ".join(f"SUM({cs.DUCK.hex_int(cs.DUCK.substr(cs.DUCK.md5(p), 1, 15))})" for p in lake_parts.values())
    got = con.execute(f"SELECT {sums} FROM zoo_rows").fetchall()[0]  # noqa: S608 - built here
    return src, dict(zip(lake_parts, (int(v) for v in got), strict=True))


def test_both_engines_agree_on_every_type_of_the_zoo(stack: Settings, spark: Any) -> None:
    """Per column and per row, over the zoo's edge values (bootstrapped and then streamed and merged), and the
    zero dates of NOT NULL / nullable / TIMESTAMP columns: the source-side and lake-side checksums are equal."""
    db = f"rc_zoo_{uuid.uuid4().hex[:8]}"
    tables = [TableId(db, "zoo"), TableId(db, "zd")]
    conn = connect(stack)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {quote_ident(db)}")
        cur.execute(f"USE {quote_ident(db)}")
        cur.execute(type_zoo.ZOO_DDL)
        cur.execute(type_zoo.ZERO_DDL)
        columns = tuple(c for c in type_zoo.COLUMNS if c != "id")
        for k, values in enumerate(type_zoo.VALUE_SETS, start=1):
            cur.execute(f"INSERT INTO zoo (id, {', '.join(columns)}) VALUES ({k}, {', '.join(values[c] for c in columns)})")
        cur.execute(f"INSERT INTO zoo (id) VALUES ({len(type_zoo.VALUE_SETS) + 1})")  # every column NULL
        rng = random.Random(11)
        for k in range(10, 60):
            values = type_zoo.random_values(rng, columns)
            cur.execute(f"INSERT INTO zoo (id, {', '.join(columns)}) VALUES ({k}, {', '.join(values[c] for c in columns)})")
        conn.commit()
        type_zoo.insert_zero_rows(cur)
        conn.commit()
    finally:
        conn.close()
    try:
        for t in tables:
            bootstrap(stack, t)
        # the streamed path too: changes of edge values, landed and merged
        rng = random.Random(12)
        statements = []
        for k in range(60, 90):
            values = type_zoo.random_values(rng, columns)
            statements.append(f"INSERT INTO {quote_ident(db)}.zoo (id, {', '.join(columns)}) "
                              f"VALUES ({k}, {', '.join(values[c] for c in columns)})")
        statements += [f"UPDATE {quote_ident(db)}.zoo SET f = 0.1, db = 2.36, ts6 = '2025-10-26 00:59:59.999999' WHERE id = 2",
                       f"DELETE FROM {quote_ident(db)}.zoo WHERE id = 11"]
        execute(stack, *statements)
        connectors.wait_captured(stack, timeout=300)
        Ingestor(stack, lake.open_catalog(stack)).drain(tables=tables, through_source=True)
        for t in tables:
            merge_table(spark, stack.catalog.name, db, t.table)
            src, lake_sums = _per_column_sums(stack, t)
            differ = {c: (src[c], lake_sums[c]) for c in src if src[c] != lake_sums[c]}
            assert not differ, (t, differ)
            assert compare_table(stack, lake.open_catalog(stack), t).equal
        with consuming(stack, tables):
            for t in tables:
                result = check_table(stack, lake.open_catalog(stack), t, wait_seconds=120)
                assert result.equal, (result.result, result.diffs[:3], result.columns_differ)
                assert result.source_rows == result.lake_rows > 0
    finally:
        forget(stack, tables)


def test_rows_changed_outside_the_binlog_are_found_and_repaired(stack: Settings, spark: Any,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    db = f"rc_oob_{uuid.uuid4().hex[:8]}"
    table = TableId(db, "a")
    create_tables(stack, db, ("a",))
    rows = ", ".join(f"({k}, {k * 10}, {k}.125, 'n{k}')" for k in range(1, 41))
    execute(stack, f"INSERT INTO {quote_ident(db)}.a VALUES {rows}")
    try:
        bootstrap(stack, table)
        conn = connect(stack, database=db)
        try:
            cur = conn.cursor()
            cur.execute("SET SESSION sql_log_bin = 0")  # invisible to Debezium: only a reconciliation can see these
            cur.execute("INSERT INTO a VALUES (1001, 7, NULL, 'hidden')")
            cur.execute("UPDATE a SET amount = -1.5, note = 'changed' WHERE id = 5")
            cur.execute("DELETE FROM a WHERE id = 7")
            conn.commit()
        finally:
            conn.close()
        catalog = lake.open_catalog(stack)
        with consuming(stack, [table]):
            code, out, err = run_cli(["check", str(table), "--output", "json", "--wait", "120"], capsys)
            assert code == 1, (out, err)
            doc = json.loads(out)
            assert doc["reconciliation"][0]["result"] == "DIFFERENT"
            found = sorted((d["kind"], d["key"]["id"], tuple(d["columns"])) for d in doc["differences"])
            assert found == [("different", "5", ("amount", "note")), ("extra", "7", ()), ("missing", "1001", ())]
            offsets_before = landed_offsets(catalog.load_table(lake.changelog_name(table)))
            code, out, err = run_cli(["repair", str(table), "--output", "json", "--wait", "120"], capsys)
            assert code == 0, (out, err)
            doc = json.loads(out)
            assert (doc["repair"][0]["rows landed"], doc["repair"][0]["deletes landed"]) == (2, 1)
            assert any(f"cdc merge {table}" in m for m in doc["messages"])
            changelog = catalog.load_table(lake.changelog_name(table))
            assert landed_offsets(changelog) == offsets_before  # the repair commit is passed over by the offset reader
            merge_table(spark, stack.catalog.name, db, "a")
            code, out, err = run_cli(["check", str(table), "--wait", "120"], capsys)
            assert code == 0, (out, err)
            assert "EQUAL" in out
            assert compare_table(stack, catalog, table).equal
            # changes streamed after the repair land exactly once (nothing re-landed, nothing skipped); the check
            # sees them unmerged, as of its position, then the merge folds them in
            execute(stack, f"INSERT INTO {quote_ident(db)}.a VALUES (2000, 1, 1.000, 'after')",
                    f"UPDATE {quote_ident(db)}.a SET n = 99 WHERE id = 1")
            code, out, err = run_cli(["check", str(table), "--wait", "120"], capsys)
            assert code == 0, (out, err)
            merge_table(spark, stack.catalog.name, db, "a")
        assert compare_table(stack, catalog, table).equal
        changes = catalog.load_table(lake.changelog_name(table)).scan(
            selected_fields=(KAFKA_TOPIC, KAFKA_PARTITION, KAFKA_OFFSET, "id", "n")).to_arrow().to_pylist()
        streamed = [(c[KAFKA_PARTITION], c[KAFKA_OFFSET]) for c in changes if c[KAFKA_TOPIC] != REPAIR_TOPIC]
        assert len(streamed) == len(set(streamed)), "a streamed change landed twice"
        # each change streamed after the repair landed once (the initial inserts may land too: older than the bootstrap)
        after = [(c["id"], c["n"]) for c in changes if c[KAFKA_TOPIC] != REPAIR_TOPIC and (c["id"], c["n"]) in ((2000, 1), (1, 99))]
        assert sorted(after) == [(1, 99), (2000, 1)]
        assert sorted(c["id"] for c in changes if c[KAFKA_TOPIC] == REPAIR_TOPIC) == [5, 7, 1001]
    finally:
        forget(stack, [table])


def test_ten_checks_under_a_live_writer_report_equal(stack: Settings, spark: Any) -> None:
    db = f"rc_live_{uuid.uuid4().hex[:8]}"
    names = ("a", "b", "c")
    tables = [TableId(db, t) for t in names]
    create_tables(stack, db, names)
    write_some(stack, db, random.Random(3), 40, names)  # some rows before the bootstrap
    try:
        for t in tables:
            bootstrap(stack, t)
        live_after: list[bool] = []
        results = []

        merged: list[str] = []

        def merge_after_s() -> None:
            """Between a check's snapshot and its lake side: changes after S land, and a merge folds them in."""
            time.sleep(2)
            merged.append(names[len(merged) % len(names)])
            merge_table(spark, stack.catalog.name, db, merged[-1])

        with consuming(stack, tables), Writer(stack, db, seed=4, tables=names):
            for round_ in range(10):
                hook = merge_after_s if round_ in (2, 5, 8) else None
                checked = check_tables(stack, lake.open_catalog(stack), tables, wait_seconds=120, before_lake=hook)
                for r in checked:
                    print(f"check {round_} {r.table} at {r.position}: {r.seconds:.1f} s, {r.touched} keys folded, "  # noqa: T201
                          f"{r.late} merged after S, {r.not_evaluable} not evaluable, {r.differing_buckets} buckets drilled")
                    assert r.equal, (round_, r.table, r.result, r.position, r.diffs[:5], r.unexplained_cells)
                results += checked
            catalog = lake.open_catalog(stack)
            for r in results:
                changelog = catalog.load_table(lake.changelog_name(TableId.parse(r.table)))
                later = changelog.scan(row_filter=GreaterThanOrEqual(SEQ, Decimal(r.seq)),  # type: ignore[call-arg, arg-type]
                                       selected_fields=(SEQ,)).to_arrow()
                live_after.append(later.num_rows > 0)
        # the writer was really live: changes at or after S landed while most checks ran
        assert sum(live_after) >= len(results) // 2, live_after
        assert all(r.source_rows > 0 for r in results)
        assert sum(r.touched for r in results) > 0  # the fold as of S was exercised, not only the base
        assert sum(r.late for r in results) > 0, "no merge ran between a check's snapshot and its lake side"
    finally:
        forget(stack, tables)
