"""Helpers for the fault suite: `cdc` as a real process, a continuous writer, and the oracle."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from cdc import connectors
from cdc.config import Settings
from cdc.events.model import TableId
from cdc.ingest import offsets
from cdc.ingest.capture import CaptureRules
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake, state
from cdc.source import connect, quote_ident
from cdc.verify import compare_table
from spark_jobs.merge import merge_table

TABLES = ("a", "b", "c")


def cdc_process(args: Sequence[str], **env: str) -> subprocess.Popen[bytes]:
    """`cdc ARGS` as its own process group (so a kill reaches a Spark JVM it started too)."""
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "cdc", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> bytes:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    out, _ = proc.communicate(timeout=120)
    return out or b""


def create_tables(settings: Settings, db: str, tables: Sequence[str] = TABLES) -> None:
    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(db)}")
        cur.execute(f"CREATE DATABASE {quote_ident(db)}")
        for t in tables:
            cur.execute(f"CREATE TABLE {quote_ident(db)}.{quote_ident(t)} (id INT PRIMARY KEY, n BIGINT NOT NULL, "
                        "amount DECIMAL(12,3) NULL, note VARCHAR(40) NULL)")
        conn.commit()
    finally:
        conn.close()


def write_some(settings: Settings, db: str, rng: random.Random, transactions: int, tables: Sequence[str] = TABLES) -> None:
    conn = connect(settings, database=db)
    try:
        cur = conn.cursor()
        for _ in range(transactions):
            for _ in range(rng.randint(1, 8)):
                t = quote_ident(rng.choice(list(tables)))
                k = rng.randint(1, 400)
                roll = rng.random()
                if roll < 0.6:
                    cur.execute(f"INSERT INTO {t} VALUES (%s, 1, %s, %s) ON DUPLICATE KEY UPDATE n = n + 1, amount = VALUES(amount)",
                                (k, Decimal(rng.randint(-10**6, 10**6)) / 1000, rng.choice([None, "x", "ü🙂"])))
                elif roll < 0.8:
                    cur.execute(f"DELETE FROM {t} WHERE id = %s", (k,))
                else:
                    cur.execute(f"UPDATE IGNORE {t} SET id = %s WHERE id = %s", (k + 1000, k))  # a key change (may hit nothing)
            conn.commit()
    finally:
        conn.close()


class Writer:
    """Keeps writing in a thread until stopped: the continuous workload the faults hit."""

    def __init__(self, settings: Settings, db: str, seed: int, tables: Sequence[str] = TABLES) -> None:
        self.settings, self.db, self.tables = settings, db, tables
        self.rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                write_some(self.settings, self.db, self.rng, 5, self.tables)
                time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001 - re-raised by stop()
            self.error = exc

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self.error is not None:
            raise self.error


def wait_captured(settings: Settings, db: str = "", tables: Sequence[str] = TABLES) -> None:
    connectors.wait_captured(settings, timeout=300)


def assert_oracle(settings: Settings, spark: Any, db: str, tables: Sequence[str] = TABLES) -> None:
    """Drain, merge, then: source == base for every table, no change landed twice, offsets never went back."""
    wait_captured(settings, db, tables)
    Ingestor(settings, lake.open_catalog(settings)).drain()
    catalog = lake.open_catalog(settings)
    for t in tables:
        merge_table(spark, settings.catalog.name, db, t)
        table = TableId(db, t)
        result = compare_table(settings, catalog, table)
        assert result.equal, (t, result.missing_in_lake[:2], result.extra_in_lake[:2], result.different[:2])
        changelog = catalog.load_table(lake.changelog_name(table))
        coords = changelog.scan(selected_fields=("_kafka_partition", "_kafka_offset")).to_arrow().to_pylist()
        pairs = [(r["_kafka_partition"], r["_kafka_offset"]) for r in coords]
        assert len(pairs) == len(set(pairs)), f"{table}: a change was landed twice"
        history = [offsets.recorded([snap.summary.additional_properties if snap.summary else None])
                   for snap in reversed(list(lake.ancestors(changelog)))]
        recorded = [h for h in history if h]
        for before, after in zip(recorded, recorded[1:], strict=False):
            for topic, parts in before.items():
                for p, o in parts.items():
                    assert after.get(topic, {}).get(p, o) >= o, f"{table}: recorded offsets went backwards"


class Watched:
    """A process started by `cdc_process` whose output a reader thread collects line by line as it
    comes, so a test can wait for a log line and act right after it, without blocking on the pipe."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lines: list[tuple[float, str]] = []  # (time.monotonic() when read, line)
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            with self._lock:
                self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))

    @property
    def text(self) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines)

    def wait_for(self, match: Any, timeout: float) -> tuple[float, str]:
        """The first line (read so far or later) for which `match(line)` is true, with the time it was read."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            with self._lock:
                fresh = self.lines[seen:]
            for at, line in fresh:
                if match(line):
                    return at, line
            seen += len(fresh)
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"exited with {self.proc.returncode} before the line came:\n{self.text[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no such line within {timeout:.0f} s:\n{self.text[-3000:]}")
            time.sleep(0.02)

    def kill(self, sig: int = signal.SIGKILL) -> str:
        """Signal the process group, wait for the process and the end of its output; returns the output."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=120)
        self._reader.join(timeout=120)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.text


def live_group_members(pgid: int) -> list[int]:
    """Processes of process group `pgid` that are alive (not zombies), from /proc."""
    members = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(pid))
    return members


def execute(settings: Settings, *statements: str) -> None:
    """Run statements at the source in one transaction."""
    conn = connect(settings)
    try:
        cur = conn.cursor()
        for s in statements:
            cur.execute(s)
        conn.commit()
    finally:
        conn.close()


def forget(settings: Settings, tables: Sequence[TableId]) -> None:
    """Leave nothing for the suite's later drains: no topic (a drain of every topic would meet the DDL again),
    no lake table, no halt, no source database. The lake tables go too: Connect's producer recreates a
    deleted topic (empty, with a new topic id) when it refreshes its metadata, and a drain of every topic
    would then halt a lake table that recorded offsets of the old one."""
    from confluent_kafka.admin import AdminClient
    from pyiceberg.exceptions import NamespaceNotEmptyError, NoSuchNamespaceError, NoSuchTableError

    catalog = lake.open_catalog(settings)
    rules = CaptureRules(settings.connect.topic_prefix)
    admin = AdminClient(settings.kafka.client_config())
    topics = sorted({rules.topic(t) for t in tables} & set(admin.list_topics(timeout=10).topics))
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result()
    for t in tables:
        for ident in (lake.changelog_name(t), lake.base_name(t), lake.tombstones_name(t)):
            try:
                catalog.drop_table(ident)
            except NoSuchTableError:
                pass
        state.clear_halt(catalog, t)
        state.forget_landed_through(catalog, t)
    for db in sorted({t.db for t in tables}):
        try:
            catalog.drop_namespace(db)
        except (NoSuchNamespaceError, NamespaceNotEmptyError):
            pass
    execute(settings, *(f"DROP DATABASE IF EXISTS {quote_ident(db)}" for db in sorted({t.db for t in tables})))
