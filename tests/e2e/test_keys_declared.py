"""Tables without a primary key on the real stack (issue 10, item 5): a key declared in settings
(`tables.<db.table>.key`, Debezium's message.key.columns), streamed and bootstrapped, merged by the real
Spark job and equal to the source row for row; the bootstrap's refusals of a key that cannot key the lake."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cdc import connectors
from cdc.bootstrap.snapshot import bootstrap
from cdc.cli import main
from cdc.config import Settings, TableOverride
from cdc.events.model import TableId
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake
from cdc.source import connect, quote_ident
from cdc.verify import compare_table
from spark_jobs.merge import merge_table
from tests.e2e.faults_support import forget

pytestmark = pytest.mark.e2e

KEYS = {"streamed": ["host", "day"], "boot": ["id"], "dup": ["id"], "nulls": ["id"], "hidden": ["id"], "pk": ["v"]}


def _execute(settings: Settings, db: str | None, *statements: str, log_bin: bool = True) -> None:
    conn = connect(settings, database=db)
    try:
        cur = conn.cursor()
        if not log_bin:
            cur.execute("SET SESSION sql_log_bin = 0")  # rows only a bootstrap can see
        for s in statements:
            cur.execute(s)
        conn.commit()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def keyed(stack: Settings) -> Iterator[tuple[Settings, str]]:
    """A `kl_` database, settings that declare keys for its tables, and the connector running them."""
    db = f"kl_{uuid.uuid4().hex[:8]}"
    settings = stack.model_copy(deep=True)
    for table, key in KEYS.items():
        settings.tables[f"{db}.{table}"] = TableOverride(key=key)
    _execute(stack, None, f"CREATE DATABASE {quote_ident(db)}")
    try:
        connectors.apply(settings)
        assert connectors.debezium_config(settings, settings.connector_secrets_file())["message.key.columns"].count(db) == len(KEYS)
        yield settings, db
    finally:
        connectors.apply(stack)
        forget(stack, [TableId(db, t) for t in KEYS])


def _drain_merge_compare(settings: Settings, spark: Any, tables: list[TableId]) -> None:
    connectors.wait_captured(settings, timeout=300)
    Ingestor(settings, lake.open_catalog(settings)).drain(tables=tables)
    catalog = lake.open_catalog(settings)
    for t in tables:
        merge_table(spark, settings.catalog.name, t.db, t.table)
        result = compare_table(settings, catalog, t)
        assert result.equal, (str(t), result.missing_in_lake[:3], result.extra_in_lake[:3], result.different[:3],
                              result.duplicate_keys)


def test_a_declared_key_streams_like_a_primary_key(keyed: tuple[Settings, str], spark: Any) -> None:
    settings, db = keyed
    t = TableId(db, "streamed")
    _execute(settings, db, "CREATE TABLE streamed (hits INT, host VARCHAR(20) NOT NULL, day DATE NOT NULL, note VARCHAR(20))")
    _execute(settings, db,
             *(f"INSERT INTO streamed VALUES ({i}, 'h{i % 5}', DATE'2026-01-01' + INTERVAL {i // 5} DAY, 'n{i}')" for i in range(60)),
             "UPDATE streamed SET hits = hits + 1000 WHERE host = 'h1'",
             "UPDATE streamed SET day = day + INTERVAL 1 YEAR WHERE host = 'h2' AND hits < 20",  # a key part changes
             "DELETE FROM streamed WHERE host = 'h3' AND hits > 30",
             "INSERT INTO streamed VALUES (7, 'h3', DATE'2026-01-12', 'again')")  # a deleted key comes back
    _drain_merge_compare(settings, spark, [t])
    base = lake.open_catalog(settings).load_table(lake.base_name(t))
    assert json.loads(base.properties[lake.PROP_KEY]) == ["host", "day"]  # declared order, not table order
    # a later change still arrives and applies
    _execute(settings, db, "UPDATE streamed SET note = 'late' WHERE host = 'h0'", "DELETE FROM streamed WHERE host = 'h4'")
    _drain_merge_compare(settings, spark, [t])


def test_a_declared_key_bootstraps_and_rebuilds(keyed: tuple[Settings, str], spark: Any) -> None:
    settings, db = keyed
    t = TableId(db, "boot")
    _execute(settings, db, "CREATE TABLE boot (v VARCHAR(20), id INT NOT NULL)")
    _execute(settings, db, *(f"INSERT INTO boot VALUES ('old{i}', {i})" for i in range(250)), log_bin=False)
    report = bootstrap(settings, t, chunk_rows=40)  # pages by the declared key
    assert (report.rows, report.chunks) == (250, 7)
    _execute(settings, db, "UPDATE boot SET v = 'new' WHERE id % 3 = 0", "DELETE FROM boot WHERE id >= 200",
             "INSERT INTO boot VALUES ('fresh', 1000)")
    _drain_merge_compare(settings, spark, [t])
    _execute(settings, db, *(f"INSERT INTO boot VALUES ('hidden{i}', {2000 + i})" for i in range(30)), log_bin=False)
    bootstrap(settings, t, rebuild=True, chunk_rows=40)
    _execute(settings, db, "UPDATE boot SET v = 'after rebuild' WHERE id = 1000")
    _drain_merge_compare(settings, spark, [t])


def _bootstrap_exit(settings: Settings, table: TableId, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    tables = {k: v.model_dump(include={"key", "exclude_columns"}) for k, v in settings.tables.items()}
    tables[f"{table.db}.hidden"]["exclude_columns"] = ["id"]  # the connector refuses this one; so does the bootstrap
    monkeypatch.setenv("CDC_TABLES", json.dumps(tables))
    with pytest.raises(SystemExit) as exit_info:
        main(["bootstrap", str(table)])
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out + captured.err


def test_bootstrap_refuses_a_declared_key_that_cannot_key_the_lake(
    keyed: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, db = keyed
    _execute(settings, db,
             "CREATE TABLE dup (id INT NOT NULL, v INT)", "INSERT INTO dup VALUES (1, 1), (2, 2), (2, 3)",
             "CREATE TABLE nulls (id INT NULL, v INT)", "INSERT INTO nulls VALUES (1, 1), (NULL, 2)",
             "CREATE TABLE hidden (id INT NOT NULL, secret VARCHAR(9))",
             "CREATE TABLE pk (id INT PRIMARY KEY, v INT)")
    expected = {
        "dup": "the declared key is not unique: 2 rows have id=2",
        "nulls": "1 rows have a NULL in the declared key columns ['id']",
        "hidden": "declared key columns ['id'] are in tables.",
        "pk": "differs from the primary key ['id']",
    }
    catalog = lake.open_catalog(settings)
    for table, reason in expected.items():
        t = TableId(db, table)
        code, out = _bootstrap_exit(settings, t, monkeypatch, capsys)
        assert code == 2, out
        assert reason in out, out
        assert not catalog.table_exists(lake.base_name(t))  # refused before anything was written
    # now that `pk` exists, applying a key for it that is not its primary key is refused, the connector untouched
    live = f"{settings.connect.url}/connectors/{settings.connect.connector_name}/config"
    before = connectors._request(live)
    monkeypatch.setenv("CDC_TABLES", json.dumps({k: v.model_dump(include={"key"}) for k, v in settings.tables.items()}))
    with pytest.raises(SystemExit) as exit_info:
        main(["connectors", "apply"])
    out = capsys.readouterr()
    assert exit_info.value.code == 2, out
    assert "differs from the primary key ['id']" in out.out + out.err
    assert connectors._request(live) == before  # refused before anything was applied


# ---- tables without any key: a multiset ------------------------------------------------------------------


@pytest.fixture
def bag_db(stack: Settings) -> Iterator[str]:
    db = f"kl_{uuid.uuid4().hex[:8]}"
    _execute(stack, None, f"CREATE DATABASE {quote_ident(db)}")
    try:
        yield db
    finally:
        forget(stack, [TableId(db, t) for t in ("bag", "bagboot")])


def test_a_keyless_table_streams_as_a_multiset(stack: Settings, spark: Any, bag_db: str) -> None:
    t = TableId(bag_db, "bag")
    _execute(stack, bag_db, "CREATE TABLE bag (a INT, b VARCHAR(9), c DECIMAL(6,2))")
    _execute(stack, bag_db,
             *["INSERT INTO bag VALUES (1, 'x', 1.50)"] * 3, *["INSERT INTO bag VALUES (2, NULL, NULL)"] * 2,
             "INSERT INTO bag VALUES (3, 'y', 0)",
             "DELETE FROM bag WHERE a = 1 LIMIT 1",  # one of three identical rows
             "UPDATE bag SET b = 'z' WHERE a = 3",
             "UPDATE bag SET a = a + 10 WHERE a = 2",  # two identical rows with NULLs, one statement
             "DELETE FROM bag WHERE a = 12 AND b IS NULL LIMIT 1")
    _drain_merge_compare(stack, spark, [t])
    base = lake.open_catalog(stack).load_table(lake.base_name(t))
    assert json.loads(base.properties[lake.PROP_KEY]) == []
    assert base.spec().is_unpartitioned()
    got = sorted((r["a"], r["b"] or "") for r in base.scan(selected_fields=("a", "b")).to_arrow().to_pylist())
    assert got == [(1, "x"), (1, "x"), (3, "z"), (12, "")]
    snapshots = len(base.snapshots())
    assert merge_table(spark, stack.catalog.name, bag_db, "bag").skipped  # a re-run changes nothing
    assert len(lake.open_catalog(stack).load_table(lake.base_name(t)).snapshots()) == snapshots
    _execute(stack, bag_db, "INSERT INTO bag VALUES (1, 'x', 1.50)", "DELETE FROM bag WHERE a = 3",
             "UPDATE bag SET c = 9 WHERE a = 1 LIMIT 1")
    _drain_merge_compare(stack, spark, [t])
    # a column added with a default: rows from before it read the default, so a later delete of one still
    # finds its identical row in the lake
    _execute(stack, bag_db, "ALTER TABLE bag ADD COLUMN d INT NOT NULL DEFAULT 5")
    _execute(stack, bag_db, "DELETE FROM bag WHERE a = 1 AND c = 1.50 LIMIT 1", "INSERT INTO bag VALUES (1, 'x', 1.50, 6)",
             "UPDATE bag SET b = 'w' WHERE a = 12")
    _drain_merge_compare(stack, spark, [t])


def test_a_keyless_table_bootstraps_and_rebuilds(stack: Settings, spark: Any, bag_db: str) -> None:
    t = TableId(bag_db, "bagboot")
    _execute(stack, bag_db, "CREATE TABLE bagboot (a INT, b VARCHAR(9))")
    _execute(stack, bag_db, *(f"INSERT INTO bagboot VALUES ({i % 7}, {'NULL' if i % 5 == 0 else repr(str(i % 3))})"
                              for i in range(60)), log_bin=False)
    report = bootstrap(stack, t, chunk_rows=8)  # one pass, 8 rows at a time
    assert (report.rows, report.chunks) == (60, 8)
    _execute(stack, bag_db, "DELETE FROM bagboot WHERE a = 1 LIMIT 2", "UPDATE bagboot SET b = 'u' WHERE a = 2 LIMIT 1",
             "INSERT INTO bagboot VALUES (1, NULL), (1, NULL)")
    _drain_merge_compare(stack, spark, [t])
    _execute(stack, bag_db, *["INSERT INTO bagboot VALUES (9, 'hidden')"] * 4, log_bin=False)
    bootstrap(stack, t, rebuild=True, chunk_rows=8)
    _execute(stack, bag_db, "DELETE FROM bagboot WHERE a = 9 LIMIT 1", "INSERT INTO bagboot VALUES (8, 'late')")
    _drain_merge_compare(stack, spark, [t])
