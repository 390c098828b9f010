"""`cdc bootstrap` pages through every kind of primary key without losing or bending a row.

The chunked read continues after the last key of the previous chunk. That only works when the
comparison of the next chunk agrees with the order of the previous one and the carried key value is
the exact stored value: ENUM/SET sort by index/bitmask but compare with a string as text, BIT and
DECIMAL must compare as numbers (not as doubles), collations decide how strings order and compare
(case-insensitive, PAD SPACE), and binary keys hold bytes that are no valid text.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cdc.bootstrap.snapshot import bootstrap
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.lake import catalog as lake
from cdc.source import connect, quote_ident
from cdc.verify import compare_table
from tests.e2e.faults_support import assert_oracle

pytestmark = pytest.mark.e2e

LABELS = [f"v{(i * 7919) % 3000:04d}" for i in range(3000)]
# table -> (DDL body, INSERT ... SELECT body over seq_1_to_N, N)
KEY_TABLES: dict[str, tuple[str, str, int]] = {
    # index order west < east < north, text order east < north < west
    "enum_k": ("region ENUM('west','east','north') NOT NULL, id INT NOT NULL, v INT NOT NULL, PRIMARY KEY (region, id)",
               "SELECT ELT(1 + seq % 3, 'west', 'east', 'north'), seq, seq FROM seq_1_to_6000", 6000),
    # members not in alphabetical order; every one of the 16 combinations (the empty set too)
    "set_k": ("tags SET('c','a','b','d') NOT NULL, id INT NOT NULL, v INT NOT NULL, PRIMARY KEY (tags, id)",
              "SELECT seq % 16, seq DIV 16, seq FROM seq_1_to_4000", 4000),
    # one ENUM key part alone, 3,000 labels whose text order is not their index order
    "enum_single": (f"label ENUM({', '.join(repr(x) for x in LABELS)}) NOT NULL PRIMARY KEY, v INT NOT NULL",
                    "SELECT seq, seq FROM seq_1_to_3000", 3000),
    "bit_k": ("b BIT(12) NOT NULL PRIMARY KEY, v INT NOT NULL",
              "SELECT seq - 1, seq FROM seq_1_to_4096", 4096),
    # BIT(1) is a boolean in the lake, which Iceberg cannot bucket: not the first key part
    "bool_k": ("grp INT NOT NULL, flag BIT(1) NOT NULL, v INT NOT NULL, PRIMARY KEY (grp, flag)",
               "SELECT seq DIV 2, seq % 2, seq FROM seq_1_to_3000", 3000),
    # neighbours differ in the 30th significant digit: as doubles they would all be equal
    "dec_k": ("d DECIMAL(30,10) NOT NULL PRIMARY KEY, v INT NOT NULL",
              "SELECT CAST(12345678901234567890 AS DECIMAL(30,10)) + (CAST(seq AS SIGNED) - 2500) * 0.0000000001, seq FROM seq_1_to_5000",
              5000),
    # wall clocks through the Europe/Berlin spring gap, microsecond steps
    "dt_k": ("t DATETIME(6) NOT NULL, id INT NOT NULL, v INT NOT NULL, PRIMARY KEY (t, id)",
             "SELECT TIMESTAMP'2025-03-30 01:59:59.000001' + INTERVAL (seq DIV 2) * 1234567 MICROSECOND, seq % 2, seq "
             "FROM seq_1_to_5000", 5000),
    # instants through the Europe/Berlin autumn overlap (the session is in UTC)
    "ts_k": ("t TIMESTAMP(6) NOT NULL PRIMARY KEY, v INT NOT NULL",
             "SELECT TIMESTAMP'2025-10-26 00:30:00' + INTERVAL seq * 1000003 MICROSECOND, seq FROM seq_1_to_4000", 4000),
    # case-insensitive: 'a' < 'B' < 'c', where binary order says 'B' < 'a' < 'c'
    "ci_k": ("s VARCHAR(20) COLLATE utf8mb4_general_ci NOT NULL PRIMARY KEY, v INT NOT NULL",
             "SELECT CONCAT(ELT(1 + seq % 6, 'a', 'B', 'c', 'D', 'é', 'Ø'), seq DIV 6), seq FROM seq_1_to_5000", 5000),
    # PAD SPACE: trailing spaces do not count in comparisons but are kept in the value; a tab sorts below a space
    "pad_k": ("s VARCHAR(20) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, v INT NOT NULL",
              "SELECT CONCAT('k', LPAD(seq DIV 4, 5, '0'), ELT(1 + seq % 4, '   ', ' \\t', '  \\t ', '\\t  ')), seq "
              "FROM seq_1_to_5000", 5000),
    # bytes that are not UTF-8, some ending in 0x00 or 0x20
    "bin_k": ("b VARBINARY(16) NOT NULL PRIMARY KEY, v INT NOT NULL",
              "SELECT CONCAT(UNHEX(LEFT(MD5(seq), 2 * (seq % 4))), UNHEX(LPAD(HEX(seq), 4, '0')), "
              "ELT(1 + seq % 3, '', 0x00, 0x20)), seq FROM seq_1_to_4000", 4000),
}
# string-valued columns whose exact text the lake must hold (compare_table sorts SET members)
EXACT_TEXT = {"enum_k": "region", "set_k": "tags", "enum_single": "label", "ci_k": "s", "pad_k": "s"}


@pytest.fixture(scope="module")
def key_db(stack: Settings) -> str:
    db = f"bk_{uuid.uuid4().hex[:8]}"
    conn = connect(stack)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {quote_ident(db)}")
        cur.execute(f"USE {quote_ident(db)}")
        cur.execute("SET SESSION sql_log_bin = 0")  # rows that predate capture: only the bootstrap brings them
        for table, (ddl, select, _) in KEY_TABLES.items():
            cur.execute(f"CREATE TABLE {quote_ident(table)} ({ddl})")
            cur.execute(f"INSERT INTO {quote_ident(table)} {select}")
        conn.commit()
    finally:
        conn.close()
    return db


def _source_count(settings: Settings, db: str, table: str) -> int:
    conn = connect(settings, database=db)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {quote_ident(table)}")
        return int(cur.fetchone()[0])
    finally:
        conn.close()


def _source_text(settings: Settings, db: str, table: str, column: str) -> list[str]:
    conn = connect(settings, database=db)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT CAST({quote_ident(column)} AS CHAR) FROM {quote_ident(table)}")
        return sorted(str(r[0]) for r in cur.fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize("table", list(KEY_TABLES))
def test_every_key_type_pages_exactly(stack: Settings, catalog: Any, key_db: str, table: str) -> None:
    rows = _source_count(stack, key_db, table)
    assert rows == KEY_TABLES[table][2], "the fixture did not create the rows it meant to"
    report = bootstrap(stack, TableId(key_db, table), chunk_rows=1000)
    assert report.rows == rows
    lake_rows = catalog.load_table((key_db, table)).scan().to_arrow()
    assert lake_rows.num_rows == rows
    result = compare_table(stack, catalog, TableId(key_db, table))
    assert result.equal, (table, result.missing_in_lake[:3], result.extra_in_lake[:3], result.different[:3],
                          result.duplicate_keys)
    if table in EXACT_TEXT:  # the label, the members in definition order, the trailing spaces: as streaming has them
        column = EXACT_TEXT[table]
        assert sorted(lake_rows.column(column).to_pylist()) == _source_text(stack, key_db, table, column)


def test_streamed_changes_meet_the_bootstrapped_enum_and_set_keys(stack: Settings, spark: Any) -> None:
    """Both paths give an ENUM key its label and a SET key its members in definition order: changes
    streamed after the bootstrap update and delete the bootstrapped rows instead of adding new keys."""
    db = f"bks_{uuid.uuid4().hex[:8]}"
    conn = connect(stack)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {quote_ident(db)}")
        cur.execute(f"USE {quote_ident(db)}")
        cur.execute("CREATE TABLE t (region ENUM('west','east','north') NOT NULL, tags SET('c','a','b') NOT NULL, "
                    "id INT NOT NULL, v INT NOT NULL, PRIMARY KEY (region, tags, id))")
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute("INSERT INTO t SELECT ELT(1 + seq % 3, 'west', 'east', 'north'), seq % 8, seq DIV 24, seq FROM seq_1_to_3000")
        conn.commit()
    finally:
        conn.close()
    report = bootstrap(stack, TableId(db, "t"), chunk_rows=1000)
    assert report.rows == 3000
    conn = connect(stack, database=db)
    try:
        cur = conn.cursor()
        cur.execute("UPDATE t SET v = -v WHERE id % 5 = 0")  # every region and member combination
        cur.execute("DELETE FROM t WHERE id % 7 = 0")
        cur.execute("INSERT INTO t SELECT ELT(1 + seq % 3, 'west', 'east', 'north'), seq % 8, 1000 + seq, seq FROM seq_1_to_48")
        conn.commit()
    finally:
        conn.close()
    assert_oracle(stack, spark, db, ("t",))
    lake_rows = lake.open_catalog(stack).load_table((db, "t")).scan(selected_fields=("region", "tags", "id")).to_arrow()
    conn = connect(stack, database=db)
    try:
        cur = conn.cursor()
        cur.execute("SELECT CAST(region AS CHAR), CAST(tags AS CHAR), id FROM t")
        source = sorted((str(r), str(g), int(i)) for r, g, i in cur.fetchall())
    finally:
        conn.close()
    assert sorted(zip(*(lake_rows.column(c).to_pylist() for c in ("region", "tags", "id")), strict=True)) == source
