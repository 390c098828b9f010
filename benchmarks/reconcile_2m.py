"""`cdc check` of a 2,000,000-row table: wall time and peak RSS of the check process, next to loading the table
whole into Python (the old comparison, `cdc.verify.compare_table`) for contrast.

Not part of `make test`. On the local stack:
    .venv/bin/python benchmarks/reconcile_2m.py [--rows 2000000] [--no-contrast] [--keep]
It creates `rc_bench.wide` (12 columns of mixed types) with MariaDB's sequence engine (outside the binlog), bootstraps it with
`cdc bootstrap`, runs a consumer of its topic in this process (the check waits for the landing to pass its
source position), and runs `cdc check rc_bench.t` (and the old comparison) under `/usr/bin/time -v`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time

from cdc.config import load_settings
from cdc.events.model import TableId
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake
from cdc.source import connect

DB = "rc_bench"
DDL = """CREATE TABLE wide (
    id BIGINT NOT NULL PRIMARY KEY, i INT NULL, bi BIGINT NULL, amount DECIMAL(12,3) NULL, f FLOAT NULL, d DOUBLE NULL,
    name VARCHAR(40) NULL, at DATETIME(6) NULL, ts TIMESTAMP(6) NULL DEFAULT NULL, day DATE NULL, raw VARBINARY(16) NULL,
    kind ENUM('a','b','c') NULL
)"""
FILL = """INSERT INTO wide SELECT seq, CAST(seq % 100000 AS SIGNED) - 50000, seq * 7919, (seq % 1000000) / 1000, seq / 7, seq / 3,
    CONCAT('name-', seq, IF(seq % 10 = 0, ' ü😀', '')), '2020-01-01' + INTERVAL seq SECOND, '2021-01-01' + INTERVAL seq SECOND,
    '2000-01-01' + INTERVAL (seq % 9000) DAY, UNHEX(MD5(seq)), ELT(1 + seq % 3, 'a', 'b', 'c') FROM seq_1_to_{rows}"""


def timed(args: list[str]) -> tuple[float, float, str]:
    """Run under /usr/bin/time -v: (wall seconds, peak RSS MB, output)."""
    started = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-v", *args], capture_output=True, text=True, check=False)  # noqa: S603
    wall = time.monotonic() - started
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    peak = int(match.group(1)) / 1024 if match else float("nan")
    return wall, peak, proc.stdout + proc.stderr


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--no-contrast", action="store_true", help="skip loading the table whole (the old comparison)")
    parser.add_argument("--keep", action="store_true", help="keep the table (skip create and bootstrap when it exists)")
    args = parser.parse_args()
    settings = load_settings()
    table = TableId(DB, "wide")
    catalog = lake.open_catalog(settings)
    exists = catalog.table_exists(lake.base_name(table))
    if not (args.keep and exists):
        from tests.e2e.faults_support import forget

        forget(settings, [table])
        conn = connect(settings)
        try:
            cur = conn.cursor()
            cur.execute(f"CREATE DATABASE {DB}")
            cur.execute(f"USE {DB}")
            cur.execute(DDL)
            # outside the binlog: the lake gets the rows from the bootstrap alone (streaming 2M inserts through
            # Debezium would only measure the landing, and leave them unmerged in the changelog)
            cur.execute("SET SESSION sql_log_bin = 0")
            started = time.monotonic()
            cur.execute(FILL.format(rows=int(args.rows)))
            conn.commit()
            print(f"filled {args.rows} rows in {time.monotonic() - started:.1f} s")  # noqa: T201
        finally:
            conn.close()
        wall, peak, out = timed([sys.executable, "-m", "cdc", "bootstrap", str(table)])
        print(f"cdc bootstrap: {wall:.1f} s, peak RSS {peak:.0f} MB")  # noqa: T201
    fast = settings.model_copy(deep=True)
    fast.ingest.progress_seconds = 2.0
    ingestor = Ingestor(fast, lake.open_catalog(fast))
    thread = threading.Thread(target=lambda: ingestor.run(tables=[table]), daemon=True)
    thread.start()
    try:
        wall, peak, out = timed([sys.executable, "-m", "cdc", "check", str(table), "--wait", "600"])
        print(out[-1500:])  # noqa: T201
        print(f"cdc check: {wall:.1f} s wall, peak RSS {peak:.0f} MB")  # noqa: T201
    finally:
        ingestor.stop()
        thread.join(timeout=60)
    if not args.no_contrast:
        code = ("from cdc.config import load_settings; from cdc.lake.catalog import open_catalog; "
                "from cdc.events.model import TableId; from cdc.verify import compare_table; s = load_settings(); "
                f"r = compare_table(s, open_catalog(s), TableId('{DB}', 'wide')); print('equal', r.equal, r.source_rows)")
        wall, peak, out = timed([sys.executable, "-c", code])
        print(out[-300:] if "equal" not in out else out.splitlines()[0])  # noqa: T201
        print(f"old comparison (whole table in Python): {wall:.1f} s wall, peak RSS {peak:.0f} MB")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
