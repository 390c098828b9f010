"""RELIABILITY.md row 7 with the catalog really gone: the Iceberg SQL catalog lives in a private
PostgreSQL cluster (tests/e2e/postgres.py) that the tests stop with `pg_ctl stop -m immediate`.

`test_catalog_unavailable_during_commits` in test_faults.py only holds a SQLite write lock (reads go
on); here every catalog call fails while the server is down. Each test uses a fresh catalog (its own
catalog name in the PostgreSQL database, its own warehouse folder and consumer group), so the
consumer first lands everything the shared Kafka holds into it; the oracle looks at this test's tables.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from cdc.config import Settings
from cdc.events.model import TableId
from cdc.ingest.commit import landed_offsets
from cdc.ingest.consumer import Ingestor
from cdc.lake import catalog as lake, state as lake_state
from cdc.spark import jdbc_catalog_conf
from tests.e2e.faults_support import Writer, assert_oracle, cdc_process, create_tables, wait_captured, write_some
from tests.e2e.postgres import PostgresCluster, postgres  # noqa: F401 - `postgres` is the session fixture

pytestmark = pytest.mark.e2e
FAST_FLUSH = {"CDC_INGEST__FLUSH_SECONDS": "0.3", "CDC_INGEST__FLUSH_ROWS": "40"}
OUTAGE_SECONDS = 20
# what a consumer backing off from the catalog logs (cdc/retry.py: "<what>: <error> (attempt n), backing off ..."; older wordings too)
BACKING_OFF = re.compile(r"backing off|outcome unknown|catalog unavailable", re.IGNORECASE)
PGPASSFILE_PROPERTY = "org.postgresql.pgpassfile"  # read by the PostgreSQL JDBC driver on every connect


class Output:
    """A process's merged stdout/stderr, read in a thread (the pipe never fills), each line with its time."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:  # closed when the process's end of the pipe is
            for raw in self.proc.stdout:
                self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))

    def between(self, start: float, end: float) -> list[str]:
        return [line for at, line in list(self.lines) if start <= at <= end]

    def tail(self, n: int = 25) -> str:
        return "\n".join(line for _, line in list(self.lines)[-n:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        """Signal the process group, wait for the exit; the return code."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        code = self.proc.wait(timeout=timeout)
        self._thread.join(timeout=30)
        return code


@pytest.fixture
def consumers() -> Iterator[list[Output]]:
    """`cdc ingest` processes a test started; any still running at the end is killed."""
    started: list[Output] = []
    yield started
    for out in started:
        if out.proc.poll() is None:
            out.stop(signal.SIGKILL)


@pytest.fixture
def pg_lake(stack: Settings, spark: Any, postgres: PostgresCluster, tmp_path: Path) -> Iterator[Settings]:  # noqa: F811
    """Settings for a fresh catalog in the private PostgreSQL, also registered in the shared Spark session.

    Spark catalogs load lazily from the session conf, so one can be added at runtime under the same name
    as the pyiceberg catalog. The URI carries no password (libpq reads `passfile`); the JDBC driver
    reads the same 0600 file through a JVM system property: no secret in a Spark conf.
    """
    name = f"pglake_{uuid.uuid4().hex[:8]}"
    settings = stack.model_copy(deep=True)
    settings.catalog.name = name
    settings.catalog.uri = postgres.sqlalchemy_uri()
    settings.catalog.warehouse = (tmp_path / "warehouse").as_uri()
    settings.kafka.group_id = f"ingest-{name}"  # never shares partitions with anyone else's consumer
    conf = jdbc_catalog_conf(settings)
    assert conf[f"spark.sql.catalog.{name}.uri"] == f"jdbc:postgresql://127.0.0.1:{postgres.port}/iceberg"
    assert not [k for k in conf if "password" in k]
    system = spark.sparkContext._jvm.java.lang.System
    system.setProperty(PGPASSFILE_PROPERTY, str(postgres.passfile))
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield settings
    finally:
        for key in conf:
            spark.conf.unset(key)
        system.clearProperty(PGPASSFILE_PROPERTY)


def _env(settings: Settings) -> dict[str, str]:
    """What points a `cdc ingest` process at the test's catalog (no secret in it: the password is in the passfile)."""
    assert settings.catalog.uri is not None
    assert settings.catalog.warehouse is not None
    return {
        "CDC_CATALOG__NAME": settings.catalog.name,
        "CDC_CATALOG__URI": settings.catalog.uri,
        "CDC_CATALOG__WAREHOUSE": settings.catalog.warehouse,
        "CDC_KAFKA__GROUP_ID": settings.kafka.group_id,
        **FAST_FLUSH,
    }


def _offsets(settings: Settings, table: TableId) -> dict[str, dict[int, int]]:
    """The changelog's recorded offsets, read through a catalog of its own (no pooled connection survives a restart)."""
    catalog = lake.open_catalog(settings)
    try:
        return landed_offsets(catalog.load_table(lake.changelog_name(table)))
    finally:
        catalog.engine.dispose()  # type: ignore[attr-defined]


def _topic_end(settings: Settings, topic: str) -> int:
    probe = Consumer({**settings.kafka.client_config(), "group.id": f"probe-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        return int(probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        probe.close()


def _wait(condition: Callable[[], bool], timeout: float, what: str, out: Output) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert out.proc.poll() is None, f"the consumer exited ({out.proc.returncode}) while waiting until {what}:\n{out.tail()}"
        assert time.monotonic() < deadline, f"timed out waiting until {what}:\n{out.tail()}"
        time.sleep(0.5)


def _land_to_the_end_and_stop(stack: Settings, settings: Settings, table: TableId, out: Output) -> None:
    """Wait until the running consumer has landed the topic to its end, then SIGTERM it: a clean exit."""
    wait_captured(stack)
    topic = f"{stack.connect.topic_prefix}.{table.db}.{table.table}"  # plain names: nothing for Debezium to sanitise
    end = _topic_end(stack, topic)
    _wait(lambda: _offsets(settings, table).get(topic, {}).get(0, -1) >= end, 180,
          f"{topic} is landed up to offset {end}", out)
    code = out.stop(signal.SIGTERM)
    catalog = lake.open_catalog(settings)
    try:
        halted = lake_state.halted_tables(catalog)
    finally:
        catalog.engine.dispose()  # type: ignore[attr-defined]
    assert table not in halted, halted[table]
    # the fresh catalog lands every topic of the shared Kafka: tables other tests made unlandable on purpose
    # (hostile names, narrowing DDL) are halted in it too, and halted tables make the exit code 1
    assert code == 0 or (code == 1 and halted), out.tail()


def _prepare(stack: Settings, settings: Settings, seed: int) -> tuple[str, TableId]:
    """A source table with changes, landed once into the fresh catalog (so it has offsets to start from)."""
    db = f"pg_{uuid.uuid4().hex[:8]}"
    create_tables(stack, db, ("a",))
    write_some(stack, db, random.Random(seed), 20, ("a",))
    wait_captured(stack, db, ("a",))
    catalog = lake.open_catalog(settings)
    try:
        Ingestor(settings, catalog).drain()
    finally:
        catalog.engine.dispose()  # type: ignore[attr-defined]
    table = TableId(db, "a")
    assert _offsets(settings, table), "the first landing recorded no offsets"
    return db, table


def test_catalog_database_stopped_during_commits(
    stack: Settings, spark: Any, postgres: PostgresCluster, pg_lake: Settings, consumers: list[Output],  # noqa: F811
) -> None:
    """Row 7: PostgreSQL stops (immediate) while `cdc ingest` commits a continuous workload. Offsets do
    not advance while it is down, the consumer stays alive backing off, and lands everything once it returns."""
    db, table = _prepare(stack, pg_lake, seed=71)
    first = _offsets(pg_lake, table)
    out = Output(cdc_process(["ingest"], **_env(pg_lake)))
    consumers.append(out)
    with Writer(stack, db, seed=72, tables=("a",)):
        # in the commit loop: it has landed new changes since it started
        _wait(lambda: _offsets(pg_lake, table) != first, 120, "the consumer lands new changes", out)
        time.sleep(2)
        # freeze it (maybe mid-commit) for the moment it takes to read the last committed offsets and stop the server,
        # so "what the catalog held when it went away" is known exactly
        os.killpg(out.proc.pid, signal.SIGSTOP)
        at_stop = _offsets(pg_lake, table)
        postgres.stop("immediate")
        went = time.monotonic()
        os.killpg(out.proc.pid, signal.SIGCONT)
        try:
            time.sleep(OUTAGE_SECONDS)  # the writer goes on; flushes fail against the missing catalog
            alive = out.proc.poll() is None
            # frozen again while the server comes back, so its first reads see what the outage left
            if alive:
                os.killpg(out.proc.pid, signal.SIGSTOP)
        finally:
            postgres.start()
        back = time.monotonic()
        assert alive, f"the consumer exited ({out.proc.returncode}) while the catalog was down:\n{out.tail()}"
        after = _offsets(pg_lake, table)
        os.killpg(out.proc.pid, signal.SIGCONT)
        time.sleep(5)  # it lands again while the writer still writes
    assert at_stop != first
    assert after == at_stop, "recorded offsets advanced while the catalog was down"
    during = out.between(went, back)
    assert any(BACKING_OFF.search(line) for line in during), "no backoff logged during the outage:\n" + "\n".join(during[-20:])
    _land_to_the_end_and_stop(stack, pg_lake, table, out)
    final = _offsets(pg_lake, table)
    assert final != at_stop  # changes written during the outage landed after it
    assert_oracle(pg_lake, spark, db, ("a",))
    print(f"\noutage during commits: offsets {first} -> {at_stop} at the stop, {after} after the restart, {final} at the end; "
          f"{sum(bool(BACKING_OFF.search(line)) for line in during)} backoff lines in {back - went:.0f} s down")


# Today `cdc ingest` exits 4 before it subscribes: cli.ingest -> lake.open_catalog -> pyiceberg's SqlCatalog
# init connects to the database (psycopg2 OperationalError) outside any retry. (The assignment-time read,
# Ingestor.plan, backs off since the landing-core rewrite; it is not reached while start-up fails.)
def test_catalog_database_down_when_the_consumer_starts(
    stack: Settings, spark: Any, postgres: PostgresCluster, pg_lake: Settings, consumers: list[Output],  # noqa: F811
) -> None:
    """Row 7 at start-up: PostgreSQL is down when `cdc ingest` starts and is assigned its partitions (start
    offsets come from the catalog then). It must back off, not crash, and land everything once it returns."""
    db, table = _prepare(stack, pg_lake, seed=81)
    first = _offsets(pg_lake, table)
    with Writer(stack, db, seed=82, tables=("a",)):
        with postgres.down():
            went = time.monotonic()
            out = Output(cdc_process(["ingest"], **_env(pg_lake)))
            consumers.append(out)
            time.sleep(OUTAGE_SECONDS)  # it starts, joins its group and is assigned while the catalog is gone
            alive = out.proc.poll() is None
        back = time.monotonic()
        assert alive, f"the consumer exited ({out.proc.returncode}) while the catalog was down:\n{out.tail()}"
        time.sleep(5)
    during = out.between(went, back)
    assert any(BACKING_OFF.search(line) for line in during), "no backoff logged during the outage:\n" + "\n".join(during[-20:])
    _land_to_the_end_and_stop(stack, pg_lake, table, out)
    final = _offsets(pg_lake, table)
    assert final != first
    assert_oracle(pg_lake, spark, db, ("a",))
    print(f"\ndown at start-up: offsets {first} before, {final} at the end; "
          f"{sum(bool(BACKING_OFF.search(line)) for line in during)} backoff lines in {back - went:.0f} s down")
