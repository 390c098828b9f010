"""A random workload for end-to-end tests: inserts, updates, deletes and key changes."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from cdc.config import Settings
from cdc.source import connect, quote_ident

ACCOUNTS_DDL = """CREATE TABLE accounts (
    id BIGINT NOT NULL PRIMARY KEY,
    owner VARCHAR(64) NOT NULL,
    balance DECIMAL(18,4) NULL,
    opened DATE NULL,
    touched DATETIME(6) NULL,
    seen TIMESTAMP(3) NULL DEFAULT NULL,
    active TINYINT(1) NOT NULL DEFAULT 1,
    score DOUBLE NULL
)"""
LINES_DDL = """CREATE TABLE ledger_lines (
    account_id BIGINT NOT NULL,
    line INT NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    memo VARCHAR(100) NULL,
    PRIMARY KEY (account_id, line)
)"""


def _row(rng: random.Random, key: int) -> tuple[Any, ...]:
    return (
        key,
        rng.choice(["ana", "bo", "chloé", "dmitri", "eve 🦊"]),
        None if rng.random() < 0.1 else Decimal(rng.randint(-10**9, 10**9)) / 10**4,
        dt.date(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 3000)),
        dt.datetime(2024, 1, 1) + dt.timedelta(microseconds=rng.randint(0, 10**14)),
        None if rng.random() < 0.3 else dt.datetime(2025, 3, 30, 0, 59, 59) + dt.timedelta(milliseconds=rng.randint(0, 10**7)),
        rng.randint(0, 1),
        rng.random() * 1000,
    )


def create_database(settings: Settings, db: str) -> None:
    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(db)}")
        cur.execute(f"CREATE DATABASE {quote_ident(db)}")
        cur.execute(f"USE {quote_ident(db)}")
        cur.execute(ACCOUNTS_DDL)
        cur.execute(LINES_DDL)
        conn.commit()
    finally:
        conn.close()


def run(settings: Settings, db: str, seed: int, transactions: int) -> int:
    """Apply a random workload; returns the number of row changes it made."""
    rng = random.Random(seed)
    conn = connect(settings, database=db)
    keys: set[int] = set()
    lines: set[tuple[int, int]] = set()
    changes = 0
    try:
        cur = conn.cursor()
        for _ in range(transactions):
            for _ in range(rng.randint(1, 12)):
                roll = rng.random()
                if roll < 0.3 or len(keys) < 5:
                    k = rng.randint(1, 10**6)
                    if k in keys:
                        continue
                    cur.execute("INSERT INTO accounts VALUES (%s,%s,%s,%s,%s,%s,%s,%s)", _row(rng, k))
                    keys.add(k)
                    line = (k, rng.randint(1, 5))
                    cur.execute("INSERT INTO ledger_lines VALUES (%s,%s,%s,%s)", (*line, Decimal(rng.randint(1, 99999)) / 100, None))
                    lines.add(line)
                    changes += 2
                elif roll < 0.75:
                    k = rng.choice(sorted(keys))
                    row = _row(rng, k)
                    cur.execute("UPDATE accounts SET owner=%s, balance=%s, opened=%s, touched=%s, seen=%s, active=%s, score=%s "
                                "WHERE id=%s", (*row[1:], k))
                    changes += cur.rowcount
                elif roll < 0.85 and lines:
                    a, ln = rng.choice(sorted(lines))
                    cur.execute("UPDATE ledger_lines SET line = line + 100, memo = 'moved' WHERE account_id=%s AND line=%s", (a, ln))
                    lines.discard((a, ln))
                    lines.add((a, ln + 100))
                    changes += cur.rowcount
                elif roll < 0.92:
                    k = rng.choice(sorted(keys))
                    new = k + 10**7
                    if new in keys:
                        continue
                    cur.execute("UPDATE accounts SET id=%s WHERE id=%s", (new, k))  # a primary-key change
                    keys.discard(k)
                    keys.add(new)
                    changes += cur.rowcount
                else:
                    k = rng.choice(sorted(keys))
                    cur.execute("DELETE FROM accounts WHERE id=%s", (k,))
                    keys.discard(k)
                    changes += cur.rowcount
            conn.commit()
    finally:
        conn.close()
    return changes
