"""Issue 10 (RELIABILITY rows 13 and 31) on the real stack: DDL mid-stream under a writer that never stops.

One database `sc_…`, one table per DDL, all of one layout. A writer inserts, updates and deletes rows
of every table, always in each table's current columns; once every table is in the lake and merged,
each table gets its DDL between two of the writer's transactions, and the writer goes on in the new
columns. One drain and one merge for all tables, then:
- every table whose change Iceberg can take equals its source value for value, both ways (rows that
  predate an ADD COLUMN ... DEFAULT read the default; a renamed or widened column is the same Iceberg
  field; a dropped column is gone, or with `dropped_columns: keep` holds exactly its values as of the drop);
- every other table is halted alone, `cdc status --output json` naming the column and both types (or
  both keys);
- `cdc bootstrap --rebuild` of each halted table under the live writer makes it equal (new schema, new
  key), clears the halt, and a change made afterwards streams in;
- Spark and pyiceberg read every table the same.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from cdc.config import Settings, TableOverride
from cdc.events.model import TableId
from cdc.ingest import dlq
from cdc.ingest.capture import CaptureRules
from cdc.ingest.consumer import Ingestor, IngestReport
from cdc.lake import catalog as lake, state
from cdc.lake.contract import PROP_KEY
from cdc.lake.schema import RESERVED
from cdc.source import connect, quote_ident
from cdc.verify import canonical
from spark_jobs.merge import merge_table
from spark_jobs.merge_sql import qualified
from tests.e2e.faults_support import Writer, cdc_process, forget, wait_captured

pytestmark = pytest.mark.e2e

Key = tuple[Any, ...]
LAYOUT = ("(id INT NOT NULL PRIMARY KEY, num INT NOT NULL, ratio FLOAT NULL, price DECIMAL(8,2) NULL, note VARCHAR(10) NULL, "
          "kind ENUM('a','b') NULL, unsig INT UNSIGNED NULL, code VARCHAR(10) NULL, grp INT NOT NULL)")
KEYS = 150  # the writer's keys: 1..KEYS (and grp 1..3 once grp is part of the key)
MARKER_ID = 1000  # the change made after the rebuilds


@dataclass(frozen=True)
class Scenario:
    table: str
    ddl: str  # after `ALTER TABLE <table>`
    settings: dict[str, str] = field(default_factory=dict)  # the table's TableOverride
    in_place: tuple[str, str, str] | None = None  # (column before, column after, its Iceberg type after): same field id
    reason: tuple[tuple[str, ...], ...] = ()  # must halt: per group, one of these in the reason (lowercase, no spaces)


EVOLVE = (
    Scenario("add_nullable", "ADD COLUMN extra VARCHAR(20) NULL"),
    Scenario("add_not_null_default", "ADD COLUMN extra INT NOT NULL DEFAULT 5"),
    Scenario("add_default", "ADD COLUMN extra VARCHAR(10) DEFAULT 'x'"),
    Scenario("drop_column", "DROP COLUMN note"),
    Scenario("drop_keep", "DROP COLUMN note", {"dropped_columns": "keep"}),
    Scenario("rename_column", "RENAME COLUMN note TO remark", in_place=("note", "remark", "string")),
    Scenario("change_column", "CHANGE COLUMN num total BIGINT NOT NULL", in_place=("num", "total", "long")),
    Scenario("int_to_bigint", "MODIFY num BIGINT NOT NULL", in_place=("num", "num", "long")),
    Scenario("float_to_double", "MODIFY ratio DOUBLE NULL", in_place=("ratio", "ratio", "double")),
    Scenario("decimal_precision", "MODIFY price DECIMAL(12,2) NULL", in_place=("price", "price", "decimal(12, 2)")),
    Scenario("varchar_longer", "MODIFY note VARCHAR(50) NULL", in_place=("note", "note", "string")),
    Scenario("enum_member", "MODIFY kind ENUM('a','b','c') NULL", in_place=("kind", "kind", "string")),
)
HALT = (
    Scenario("decimal_scale", "MODIFY price DECIMAL(8,3) NULL",
             reason=(("price",), ("decimal(8,2)",), ("decimal(8,3)",))),
    Scenario("unsigned_widening", "MODIFY unsig BIGINT UNSIGNED NULL",
             reason=(("unsig",), ("long", "intunsigned", "int(10)unsigned"), ("decimal(20,0)", "bigintunsigned", "bigint(20)unsigned"))),
    Scenario("varchar_to_int", "MODIFY code INT NULL",
             reason=(("code",), ("string", "varchar(10)"), ("->int", "int(11)", "toint", "integer"))),
    Scenario("key_change", "DROP PRIMARY KEY, ADD PRIMARY KEY (id, grp)",
             reason=(("key",), ("id,grp",))),
    Scenario("halt_policy", "ADD COLUMN extra INT NULL", {"schema_changes": "halt"},
             reason=(("extra",),)),
)
SCENARIOS = EVOLVE + HALT
DEFAULTS = {"add_not_null_default": "5", "add_default": "x"}  # what untouched rows read in the new column


# ---- the writer -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    name: str
    column_type: str  # information_schema COLUMN_TYPE, lowercase
    nullable: bool
    optional: bool  # nullable or with a default: an INSERT may leave it out


@dataclass(frozen=True)
class _Shape:
    columns: tuple[_Column, ...]
    key: tuple[str, ...]

    @property
    def others(self) -> tuple[_Column, ...]:
        return tuple(c for c in self.columns if c.name not in self.key)


def _shape(cur: Any, db: str, table: str) -> _Shape:
    cur.execute("SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (db, table))
    columns = tuple(_Column(str(n), str(t).lower(), nullable == "YES", nullable == "YES" or default is not None)
                    for n, t, nullable, default in cur.fetchall())
    cur.execute("SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                "AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX", (db, table))
    return _Shape(columns, tuple(str(r[0]) for r in cur.fetchall()))


class SchemaWriter(Writer):
    """Inserts, updates and deletes rows of its tables until stopped, in each table's current columns:
    `alter()` runs a DDL between two of its transactions and re-reads that table's columns. After a
    table's DDL it records the keys it wrote (`touched`), and never deletes a key of `protected`."""

    def __init__(self, settings: Settings, db: str, seed: int, tables: tuple[str, ...]) -> None:
        super().__init__(settings, db, seed, tables)
        self._lock = threading.Lock()
        self.touched: dict[str, set[Key]] = {}
        self.protected: dict[str, set[Key]] = {}
        self.transactions = 0
        conn = connect(settings, database=db)
        try:
            cur = conn.cursor()
            self.shapes = {t: _shape(cur, db, t) for t in tables}
        finally:
            conn.close()

    def _run(self) -> None:
        try:
            conn = connect(self.settings, database=self.db)
            try:
                cur = conn.cursor()
                while not self._stop.is_set():
                    with self._lock:
                        for _ in range(self.rng.randint(1, 6)):
                            self._statement(cur, self.rng.choice(list(self.tables)))
                        conn.commit()
                        self.transactions += 1
                    time.sleep(0.03)  # leaves the 2 cores room for Debezium, Kafka, the drains and Spark
            finally:
                conn.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised on exit
            self.error = exc

    def fill(self, rows: int) -> None:
        """Insert keys 1..rows into every table (streamed like any other write)."""
        conn = connect(self.settings, database=self.db)
        try:
            cur = conn.cursor()
            for t in self.tables:
                for k in range(1, rows + 1):
                    self._insert(cur, t, self.shapes[t], k)
            conn.commit()
        finally:
            conn.close()

    def alter(self, table: str, ddl: str) -> dict[Key, dict[str, Any]]:
        """`ALTER TABLE table ddl` between two of the writer's transactions; returns the rows just before it, by key."""
        with self._lock:
            conn = connect(self.settings, database=self.db)
            try:
                cur = conn.cursor()
                cur.execute(f"SELECT * FROM {quote_ident(table)}")
                names = [d[0] for d in cur.description]
                rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
                conn.commit()
                before = self.shapes[table]
                cur.execute(f"ALTER TABLE {quote_ident(table)} {ddl}")
                self.shapes[table] = _shape(cur, self.db, table)
            finally:
                conn.close()
            self.touched[table] = set()
        return {tuple(r[k] for k in before.key): r for r in rows}

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self._lock:
            yield

    def _value(self, c: _Column) -> Any:
        rng, t = self.rng, c.column_type
        if c.name == "grp":
            return rng.randint(1, 3)
        if c.nullable and rng.random() < 0.1:
            return None
        if c.name == "code" and t.startswith("varchar"):
            return str(rng.randint(-99_999, 99_999))  # converts to INT
        if t.startswith("bigint"):
            return rng.randint(0, 2**64 - 1) if "unsigned" in t else rng.randint(-(2**63), 2**63 - 1)
        if t.startswith("int"):
            return rng.randint(0, 2**32 - 1) if "unsigned" in t else rng.randint(-(2**31), 2**31 - 1)
        if t.startswith("float"):
            return rng.randint(-40_000, 40_000) / 4  # exact in a FLOAT and within the 6 digits MariaDB prints of one
        if t.startswith("double"):
            return rng.uniform(-1e6, 1e6)
        if t.startswith("decimal"):
            p, s = (int(x) for x in re.findall(r"\d+", t)[:2])
            return Decimal(rng.randint(-(10 ** (p - 1)) + 1, 10 ** (p - 1) - 1)).scaleb(-s)  # fits a scale one higher
        if t.startswith("varchar"):
            n = int(re.findall(r"\d+", t)[0])
            return "".join(rng.choice("abxyz ü🙂'") for _ in range(rng.randint(0, n)))
        if t.startswith("enum"):
            return rng.choice(re.findall(r"'((?:[^']|'')*)'", t))
        raise AssertionError(f"no values for {c}")

    def _key(self, shape: _Shape, k: int | None = None) -> Key:
        return tuple((self.rng.randint(1, KEYS) if k is None else k) if name == "id" else self.rng.randint(1, 3)
                     for name in shape.key)

    def _insert(self, cur: Any, table: str, shape: _Shape, k: int | None = None) -> Key:
        key = self._key(shape, k)
        others = [c for c in shape.others if not (c.optional and self.rng.random() < 0.25)]
        names = [*shape.key, *(c.name for c in others)]
        updates = ", ".join(f"{quote_ident(c.name)} = VALUES({quote_ident(c.name)})" for c in others) or "id = id"
        cur.execute(f"INSERT INTO {quote_ident(table)} ({', '.join(map(quote_ident, names))}) "
                    f"VALUES ({', '.join(['%s'] * len(names))}) ON DUPLICATE KEY UPDATE {updates}",
                    (*key, *(self._value(c) for c in others)))
        return key

    def _statement(self, cur: Any, table: str) -> None:
        shape = self.shapes[table]
        roll = self.rng.random()
        where = " AND ".join(f"{quote_ident(k)} = %s" for k in shape.key)
        if roll < 0.55:
            key = self._insert(cur, table, shape)
        elif roll < 0.85:
            key = self._key(shape)
            columns = self.rng.sample(list(shape.others), self.rng.randint(1, 3))
            cur.execute(f"UPDATE {quote_ident(table)} SET {', '.join(f'{quote_ident(c.name)} = %s' for c in columns)} WHERE {where}",
                        (*(self._value(c) for c in columns), *key))
        else:
            key = self._key(shape)
            if key in self.protected.get(table, set()):
                return
            cur.execute(f"DELETE FROM {quote_ident(table)} WHERE {where}", key)
        if table in self.touched:
            self.touched[table].add(key)


# ---- the oracle, with a kept (frozen) column -----------------------------------------------------------


def _assert_equal(settings: Settings, catalog: Any, table: TableId, kept: dict[Key, Any] | None = None) -> None:
    """Source == base both ways, every column as exact strings; the lake's columns are the source's (plus
    `note` when it is kept: then exactly `kept[key]`, its value as of the drop, or NULL for later rows)."""
    base = catalog.load_table(lake.base_name(table))
    lake_types = {f.name: f.field_type for f in base.schema().fields if f.name not in RESERVED}
    conn = connect(settings, database=table.db)
    try:
        cur = conn.cursor()
        shape = _shape(cur, table.db, table.table)
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        names = [c.name for c in shape.columns]
        cur.execute(f"SELECT {', '.join(map(quote_ident, names))} FROM {quote_ident(table.table)}")
        source_rows = cur.fetchall()
        conn.rollback()
    finally:
        conn.close()
    assert set(names) - set(lake_types) == set(), f"{table}: source columns missing in the base table: {set(names) - set(lake_types)}"
    extra = set(lake_types) - set(names)
    assert extra == ({"note"} if kept is not None else set()), f"{table}: base columns the source does not have: {sorted(extra)}"
    assert json.loads(base.properties[PROP_KEY]) == list(shape.key), (str(table), base.properties[PROP_KEY], shape.key)
    types = {c.name: c.column_type for c in shape.columns}
    idx = [names.index(k) for k in shape.key]

    def text(row: Any) -> tuple[str | None, ...]:
        return tuple(canonical(row[i], lake_types[n], types[n]) for i, n in enumerate(names))

    source = {tuple(r[i] for i in idx): text(r) for r in source_rows}
    arrow = base.scan().to_arrow()
    lake_rows: dict[Key, tuple[str | None, ...]] = {}
    frozen: dict[Key, Any] = {}
    for r in arrow.to_pylist():
        key = tuple(r[k] for k in shape.key)
        assert key not in lake_rows, f"{table}: key {key} twice in the base table"
        lake_rows[key] = text([r[n] for n in names])
        if kept is not None:
            frozen[key] = r["note"]
    missing = sorted(set(source) - set(lake_rows), key=repr)[:3]
    surplus = sorted(set(lake_rows) - set(source), key=repr)[:3]
    different = [(source[k], lake_rows[k]) for k in sorted(set(source) & set(lake_rows), key=repr) if source[k] != lake_rows[k]]
    assert (missing, surplus, different[:3]) == ([], [], []), (
        f"{table}: {len(set(source) - set(lake_rows))} rows missing in the lake {missing}, "
        f"{len(set(lake_rows) - set(source))} only in the lake {surplus}, {len(different)} differ "
        f"(source, lake) {different[:3]}; columns {names}")
    if kept is not None:
        wrong = [(k, kept.get(k), v) for k, v in sorted(frozen.items(), key=repr) if v != kept.get(k)]
        assert wrong == [], f"{table}: the kept `note` is not its value as of the drop (key, then, lake): {wrong[:3]} of {len(wrong)}"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:  # pyiceberg's timestamptz; Spark's session is UTC and gives naive times
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return str(value.isoformat())
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return str(value)


def _assert_spark_reads_as_pyiceberg(spark: Any, settings: Settings, catalog: Any, table: TableId) -> None:
    """Both readers, all columns (metadata ones too), as exact strings, sorted."""
    base = catalog.load_table(lake.base_name(table))
    names = [f.name for f in base.schema().fields]
    arrow = base.scan().to_arrow()
    mine = sorted((tuple(_text(v) for v in row) for row in zip(*(arrow.column(n).to_pylist() for n in names), strict=True)), key=repr)
    ident = qualified(settings.catalog.name, table.db, table.table)
    spark.sql(f"REFRESH TABLE {ident}")
    frame = spark.table(ident)
    assert frame.columns == names, (str(table), frame.columns, names)
    theirs = sorted((tuple(_text(v) for v in row) for row in frame.collect()), key=repr)
    diff = [(a, b) for a, b in zip(mine, theirs, strict=False) if a != b]
    assert (len(mine), diff[:3]) == (len(theirs), []), f"{table}: pyiceberg and Spark read differently (pyiceberg, Spark): {diff[:3]}"


# ---- status, drains, clean-up ---------------------------------------------------------------------------


def _status(env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run([sys.executable, "-m", "cdc", "status", "--output", "json"],  # noqa: S603
                          capture_output=True, timeout=300, env={**os.environ, **env}, check=False)
    out = proc.stdout.decode(errors="replace")
    try:
        doc = json.loads(out)
    except ValueError:
        doc = {}
    return proc.returncode, doc, out + proc.stderr.decode(errors="replace")


def _drain(settings: Settings, tables: list[TableId]) -> IngestReport:
    wait_captured(settings)
    return Ingestor(settings, lake.open_catalog(settings)).drain(tables=tables)


def _field_ids(catalog: Any, table: TableId) -> dict[str, int]:
    return {f.name: f.field_id for f in catalog.load_table(lake.base_name(table)).schema().fields}


# ---- the test ----------------------------------------------------------------------------------------------


def test_schema_changes_mid_stream_evolve_or_halt_alone_and_a_rebuild_resumes(stack: Settings, spark: Any) -> None:
    started = time.monotonic()
    db = f"sc_{uuid.uuid4().hex[:8]}"
    ids = {s.table: TableId(db, s.table) for s in SCENARIOS}
    ours = list(ids.values())
    names = {str(t) for t in ours}
    settings = stack.model_copy(deep=True)
    for s in SCENARIOS:
        if s.settings:
            settings.tables[str(ids[s.table])] = TableOverride.model_validate(s.settings)
    env = {"CDC_TABLES": json.dumps({str(ids[s.table]): s.settings for s in SCENARIOS if s.settings})}
    conn = connect(stack)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {quote_ident(db)} CHARACTER SET utf8mb4")
        for s in SCENARIOS:
            cur.execute(f"CREATE TABLE {quote_ident(db)}.{quote_ident(s.table)} {LAYOUT}")
        conn.commit()
    finally:
        conn.close()
    failures: list[str] = []  # every scenario is checked; all failures are reported together at the end

    def check(label: str, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - recorded, asserted at the end
            failures.append(f"{label}: {type(exc).__name__}: {str(exc)[:2000]}")

    timings: dict[str, float] = {}
    try:
        # 1. every table in the lake and merged once, the writer going on meanwhile; then one DDL per table
        writer = SchemaWriter(stack, db, 10, tuple(s.table for s in SCENARIOS))
        writer.fill(100)
        before: dict[str, dict[Key, dict[str, Any]]] = {}
        with writer:
            time.sleep(2)
            report = _drain(settings, ours)
            assert not set(report.halted) & names, report.halted
            timings["first drain"] = time.monotonic() - started
            catalog = lake.open_catalog(settings)
            for s in SCENARIOS:
                merge_table(spark, settings.catalog.name, db, s.table)
                assert len(catalog.load_table(lake.base_name(ids[s.table])).scan(selected_fields=("id",)).to_arrow()) > 0
            field_ids = {s.table: _field_ids(catalog, ids[s.table]) for s in SCENARIOS}
            timings["first drain and merge"] = time.monotonic() - started
            for s in SCENARIOS:
                before[s.table] = writer.alter(s.table, s.ddl)
                if s.settings.get("dropped_columns") == "keep":
                    writer.protected[s.table] = set(before[s.table])  # their kept values stay defined
                time.sleep(0.2)
            time.sleep(8)  # the writer goes on in the new columns
        assert writer.transactions > 200

        # 2. one drain and one merge: the evolvable tables equal, the others halted alone
        mark = time.monotonic()
        report = _drain(settings, ours)
        halted = {t: r for t, r in report.halted.items() if t in names}
        for s in EVOLVE:
            if str(ids[s.table]) in halted:
                failures.append(f"{s.table} ({s.ddl}): halted although Iceberg can take the change: {halted[str(ids[s.table])]}")
        for s in HALT:
            if str(ids[s.table]) not in halted:
                failures.append(f"{s.table} ({s.ddl}): not halted by the drain")
        catalog = lake.open_catalog(settings)
        rules = CaptureRules(settings.connect.topic_prefix)
        dead = [(r["topic"], r["offset"], r["error_class"], str(r["message"])[:300]) for r in dlq.rows(catalog, 100_000)
                if r["topic"] in {rules.topic(t) for t in ours}]
        if dead:
            failures.append(f"{len(dead)} dead letters of this test's tables: {dead[:3]}")
        for s in EVOLVE:
            check(f"{s.table} ({s.ddl})", _check_evolved, spark, settings, catalog, s, ids[s.table], before[s.table],
                  field_ids[s.table], writer.touched.get(s.table, set()))
        timings["drain, merge and checks after the DDL"] = time.monotonic() - mark
        code, doc, out = _status(env)
        states = {r["table"]: r["state"] for r in doc.get("tables", [])}
        reasons = {h["table"]: h["reason"] for h in doc.get("halted", [])}
        remedies = {h["table"]: h["remedy"] for h in doc.get("halted", [])}
        if code != 1:
            failures.append(f"`cdc status` exited {code} with tables halted: {out[-2000:]}")
        for s in SCENARIOS:
            name = str(ids[s.table])
            if s.reason:
                flat = re.sub(r"[\s\"'`\[\]()]", "", reasons.get(name, "").lower())
                missing = [group for group in s.reason if not any(re.sub(r"[()]", "", w) in flat for w in group)]
                if states.get(name) != "halted" or missing or f"cdc bootstrap {name} --rebuild" not in remedies.get(name, ""):
                    failures.append(f"{s.table} ({s.ddl}): `cdc status` state {states.get(name)!r}, "
                                    f"the reason names none of {missing}: {reasons.get(name)!r}, remedy {remedies.get(name)!r}")
            elif states.get(name) != "streaming" or name in reasons:
                failures.append(f"{s.table} ({s.ddl}): `cdc status` state {states.get(name)!r}, reason {reasons.get(name)!r}")

        # 3. rebuild each halted table under a live writer; the halt clears and streaming resumes
        mark = time.monotonic()
        rebuilt = [ids[s.table] for s in HALT]
        again = SchemaWriter(stack, db, 11, tuple(s.table for s in HALT))
        with again:
            time.sleep(1)
            for t in rebuilt:
                proc = cdc_process(["bootstrap", str(t), "--rebuild", "--chunk-rows", "1000"], **env)
                out = proc.communicate(timeout=600)[0].decode(errors="replace")
                if proc.returncode != 0:
                    failures.append(f"{t.table}: `cdc bootstrap --rebuild` exited {proc.returncode}: {out[-2500:]}")
            time.sleep(2)
        assert again.transactions > 20
        conn = connect(stack, database=db)
        try:
            cur = conn.cursor()
            for t in rebuilt:  # a change after every rebuild
                cur.execute(f"INSERT INTO {quote_ident(t.table)} (id, num, grp, note) VALUES (%s, 7, 1, 'after')", (MARKER_ID,))
            conn.commit()
        finally:
            conn.close()
        still = set(rebuilt) & set(state.halted_tables(lake.open_catalog(settings)))
        if still:
            failures.append(f"still halted after the rebuild: {sorted(map(str, still))}")
        report = _drain(settings, ours)
        halted = {t: r for t, r in report.halted.items() if t in names}
        if halted:
            failures.append(f"halted by the drain after the rebuilds: {halted}")
        catalog = lake.open_catalog(settings)
        for t in rebuilt:
            check(f"{t.table} after the rebuild", _check_rebuilt, spark, settings, catalog, t, report)
        code, doc, out = _status(env)
        others = {h["table"] for h in doc.get("halted", [])} - names
        states = {r["table"]: r["state"] for r in doc.get("tables", [])}
        if code != (1 if others else 0) or any(states.get(str(t)) != "streaming" for t in ours):
            failures.append(f"`cdc status` after the rebuilds: exit {code} (other halted tables: {sorted(others)}), "
                            f"states {({str(t): states.get(str(t)) for t in ours if states.get(str(t)) != 'streaming'})}")
        timings["rebuilds and checks"] = time.monotonic() - mark
        print(f"\nschema changes: {', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}, total {time.monotonic() - started:.0f} s")
        assert failures == [], "\n".join(["", *failures])
    finally:
        forget(stack, ours)


def _check_evolved(spark: Any, settings: Settings, catalog: Any, s: Scenario, t: TableId, before: dict[Key, dict[str, Any]],
                   field_ids: dict[str, int], touched: set[Key]) -> None:
    merge_table(spark, settings.catalog.name, t.db, t.table)
    kept = {k: row["note"] for k, row in before.items()} if s.settings.get("dropped_columns") == "keep" else None
    _assert_equal(settings, catalog, t, kept)
    schema = catalog.load_table(lake.base_name(t)).schema()
    if s.in_place:
        old, new, kind = s.in_place
        assert schema.find_field(new).field_id == field_ids[old], f"{old} -> {new} is a new field, not evolved in place"
        assert str(schema.find_field(new).field_type) == kind, (str(schema.find_field(new).field_type), kind)
    if s.table in DEFAULTS:  # rows that predate the ADD COLUMN and were never written since read the default
        untouched = set(before) - touched
        assert len(untouched) > 10, untouched
        rows = catalog.load_table(lake.base_name(t)).scan(selected_fields=("id", "extra")).to_arrow().to_pylist()
        wrong = [r for r in rows if (r["id"],) in untouched and (None if r["extra"] is None else str(r["extra"])) != DEFAULTS[s.table]]
        assert wrong == [], f"untouched rows do not read the default {DEFAULTS[s.table]!r}: {wrong[:3]} of {len(wrong)}"
    _assert_spark_reads_as_pyiceberg(spark, settings, catalog, t)


def _check_rebuilt(spark: Any, settings: Settings, catalog: Any, t: TableId, report: IngestReport) -> None:
    assert str(t) in report.tables, "nothing streamed after the rebuild"
    assert report.tables[str(t)].changes > 0, "nothing streamed after the rebuild"
    merge_table(spark, settings.catalog.name, t.db, t.table)
    _assert_equal(settings, catalog, t)
    after = catalog.load_table(lake.base_name(t)).scan(row_filter=f"id = {MARKER_ID}").to_arrow().to_pylist()
    assert [r["note"] for r in after] == ["after"], after
    _assert_spark_reads_as_pyiceberg(spark, settings, catalog, t)
