"""`cdc demo`: a sample shop database through the whole pipeline, ending in a source-vs-lake comparison."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import random
import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from confluent_kafka.admin import AdminClient
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchNamespaceError

from cdc import connectors
from cdc.config import CatalogSettings, Settings
from cdc.errors import ConfigError
from cdc.events.model import TableId
from cdc.ingest.capture import sanitize
from cdc.ingest.consumer import Ingestor, IngestReport
from cdc.lake.catalog import open_catalog
from cdc.source import connect, quote_ident
from cdc.stack import services
from cdc.verify import Comparison, compare_table

log = logging.getLogger(__name__)

DB = "shop"
TABLES = ("customers", "orders", "order_items")
SCHEMA_SQL = (
    """CREATE TABLE customers (
        id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(100) NOT NULL,
        email VARCHAR(200) NULL,
        balance DECIMAL(12,2) NOT NULL DEFAULT 0,
        vip TINYINT(1) NOT NULL DEFAULT 0,
        created_at DATETIME(6) NOT NULL,
        updated_at TIMESTAMP(3) NULL DEFAULT NULL
    )""",
    """CREATE TABLE orders (
        id BIGINT NOT NULL PRIMARY KEY,
        customer_id INT NOT NULL,
        status ENUM('new','paid','shipped','cancelled') NOT NULL,
        total DECIMAL(14,2) NOT NULL,
        placed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        note TEXT NULL
    )""",
    """CREATE TABLE order_items (
        order_id BIGINT NOT NULL,
        line_no SMALLINT NOT NULL,
        sku VARCHAR(32) NOT NULL,
        qty INT NOT NULL,
        unit_price DECIMAL(10,4) NOT NULL,
        PRIMARY KEY (order_id, line_no)
    )""",
)
NAMES = ("Ada", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Edsger", "Frances", "Jürgen", "Zoë 🚀")


def _loopback(host: str) -> bool:
    host = host.strip().removeprefix("[").removesuffix("]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _server_host(server: str) -> str:
    """`host`, `host:port`, `[v6]:port`, `PROTOCOL://host:port`, or a bare IPv6 address -> host."""
    server = server.strip().split("://", 1)[-1]
    if server.startswith("["):
        return server[1:].split("]", 1)[0]
    if server.count(":") == 1:
        return server.split(":", 1)[0]
    return server


def masked_uri(uri: str) -> str:
    """A URI with the password of its user info replaced (`scheme://user:***@host/...`)."""
    return re.sub(r"(?<=://)([^/@:]*):[^/@]*@", r"\1:***@", uri)


def refusal(settings: Settings, yes: bool, db: str = DB) -> str | None:
    """Pure: why the demo must not reset `db` on these settings' targets (one line), or None.

    The demo drops `db` on the source, its Kafka topics and its lake tables. Only the local stack
    may be reset without `--yes`: MariaDB and every Kafka bootstrap server on a loopback address and
    the default SQLite catalog under CDC_HOME.
    """
    if yes:
        return None
    reasons = []
    if not _loopback(settings.mariadb.host):
        reasons.append(f"MariaDB host {settings.mariadb.host} is not loopback")
    servers = [s for s in settings.kafka.bootstrap_servers.split(",") if s.strip()]
    if not servers or not all(_loopback(_server_host(s)) for s in servers):
        reasons.append(f"Kafka {settings.kafka.bootstrap_servers} is not loopback")
    props = settings.catalog_properties()
    default = settings.model_copy(update={"catalog": CatalogSettings(name=settings.catalog.name)}).catalog_properties()
    if any(props.get(k) != default[k] for k in ("type", "uri", "warehouse")):
        reasons.append("the catalog is not the local SQLite catalog under CDC_HOME")
    if not reasons:
        return None
    topics = f"{settings.connect.topic_prefix}.{db}.*"
    return (
        f"refusing to run the demo on a target that is not the local stack ({'; '.join(reasons)}): "
        f"it would drop database `{db}` on MariaDB {settings.mariadb.host}:{settings.mariadb.port}, "
        f"the Kafka topics {topics} on {settings.kafka.bootstrap_servers} "
        f"and the lake tables {db}.* in catalog `{settings.catalog.name}` at {masked_uri(props['uri'])} "
        f"(warehouse {masked_uri(props['warehouse'])}); run `cdc demo --yes` to do that"
    )


def reset(settings: Settings, catalog: Catalog, db: str) -> None:
    """Drop the demo database everywhere: source, its Kafka topics, its lake tables."""
    conn = connect(settings)
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {quote_ident(db)}")
    finally:
        conn.close()
    prefix = f"{settings.connect.topic_prefix}.{sanitize(db)}."
    admin = AdminClient(settings.kafka.client_config())
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and set(topics) & set(admin.list_topics(timeout=10).topics):
            time.sleep(0.5)
    try:
        idents = catalog.list_tables(db)
    except NoSuchNamespaceError:
        idents = []
    for ident in idents:
        catalog.purge_table(ident)
    if idents or db in {ns[0] for ns in catalog.list_namespaces()}:
        catalog.drop_namespace(db)


def _money(rng: random.Random, hi: int) -> Decimal:
    return Decimal(rng.randint(0, hi * 100)) / 100


def _ts(rng: random.Random) -> dt.datetime:
    base = dt.datetime(2025, 3, 30, 0, 0, 0)  # noqa: DTZ001 - a wall-clock DATETIME value
    return base + dt.timedelta(seconds=rng.randint(0, 86_400 * 200), microseconds=rng.randint(0, 999_999))


def seed(cur: Any, rng: random.Random, customers: int, orders: int) -> None:
    cur.executemany(
        "INSERT INTO customers (id, name, email, balance, vip, created_at, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s)",
        [
            (i, rng.choice(NAMES), None if i % 7 == 0 else f"user{i}@example.com", _money(rng, 5000),
             int(i % 5 == 0), _ts(rng), None if i % 3 == 0 else _ts(rng).replace(microsecond=(i * 1000) % 1_000_000))
            for i in range(1, customers + 1)
        ],
    )
    cur.executemany(
        "INSERT INTO orders (id, customer_id, status, total, placed_at, note) VALUES (%s,%s,%s,%s,%s,%s)",
        [
            (10_000 + i, rng.randint(1, customers), rng.choice(["new", "paid", "shipped"]), _money(rng, 900),
             _ts(rng), None if i % 4 else "leave at the door ✓")
            for i in range(orders)
        ],
    )
    cur.executemany(
        "INSERT INTO order_items (order_id, line_no, sku, qty, unit_price) VALUES (%s,%s,%s,%s,%s)",
        [
            (10_000 + i, line, f"SKU-{rng.randint(1, 400):04d}", rng.randint(1, 9), Decimal(rng.randint(1, 10**6)) / 10**4)
            for i in range(orders)
            for line in range(1, rng.randint(1, 4) + 1)
        ],
    )


def workload(conn: Any, rng: random.Random, transactions: int) -> int:
    """Mixed inserts, updates, deletes and one primary-key change; returns the number of statements."""
    cur = conn.cursor()
    statements = 0
    next_order = 50_000
    for _ in range(transactions):
        for _ in range(rng.randint(5, 20)):
            roll = rng.random()
            if roll < 0.35:
                cur.execute("UPDATE customers SET balance = %s, vip = %s, updated_at = %s WHERE id = %s",
                            (_money(rng, 9000), rng.randint(0, 1), _ts(rng), rng.randint(1, 300)))
            elif roll < 0.55:
                cur.execute("UPDATE orders SET status = %s, note = %s WHERE id = %s",
                            (rng.choice(["paid", "shipped", "cancelled"]), rng.choice([None, "gift 🎁", "urgent"]),
                             10_000 + rng.randint(0, 599)))
            elif roll < 0.70:
                cur.execute("UPDATE order_items SET qty = qty + 1, unit_price = %s WHERE order_id = %s AND line_no = 1",
                            (Decimal(rng.randint(1, 10**6)) / 10**4, 10_000 + rng.randint(0, 599)))
            elif roll < 0.85:
                next_order += 1
                cur.execute("INSERT INTO orders (id, customer_id, status, total, placed_at) VALUES (%s,%s,'new',%s,%s)",
                            (next_order, rng.randint(1, 300), _money(rng, 500), _ts(rng)))
                cur.execute("INSERT INTO order_items VALUES (%s, 1, 'SKU-0001', 1, 9.9900)", (next_order,))
                statements += 1
            elif roll < 0.93:
                victim = 10_000 + rng.randint(0, 599)
                cur.execute("DELETE FROM order_items WHERE order_id = %s", (victim,))
                cur.execute("DELETE FROM orders WHERE id = %s", (victim,))
                statements += 1
            else:
                cur.execute("DELETE FROM customers WHERE id = %s", (rng.randint(1, 300),))
            statements += 1
        conn.commit()
    # a primary-key change: Debezium sends a delete of the old key and a create of the new one
    cur.execute("UPDATE customers SET id = id + 1000000 WHERE id = (SELECT MIN(id) FROM customers)")
    cur.execute("UPDATE order_items SET line_no = line_no + 10 WHERE order_id = (SELECT MIN(order_id) FROM order_items)")
    conn.commit()
    return statements + 2


def source_position(settings: Settings) -> str:
    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@gtid_binlog_pos")
        row = cur.fetchone()
        return str(row[0]) if row else ""
    finally:
        conn.close()


def run(
    settings: Settings, progress: Callable[[str], None] = print, transactions: int = 40, yes: bool = False
) -> tuple[list[Comparison], IngestReport]:
    """The whole flow on the local stack; returns one comparison per table.

    Refuses (ConfigError, exit code 2) before touching anything when the settings point anywhere
    but the local stack, unless `yes`: the flow drops the demo database there.
    """
    refused = refusal(settings, yes)
    if refused is not None:
        raise ConfigError(refused)
    progress("starting the local stack (MariaDB, Kafka, Kafka Connect + Debezium)")
    services.up(settings)
    progress("applying the Debezium connector")
    connectors.apply(settings)
    catalog = open_catalog(settings)
    progress(f"resetting the demo database `{DB}` (source, topics, lake)")
    reset(settings, catalog, DB)
    rng = random.Random(20261125)  # noqa: S311 - a reproducible workload, not security
    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {quote_ident(DB)}")
        cur.execute(f"USE {quote_ident(DB)}")
        for ddl in SCHEMA_SQL:
            cur.execute(ddl)
        seed(cur, rng, customers=300, orders=600)
        conn.commit()
        progress(f"running a mixed workload ({transactions} transactions)")
        statements = workload(conn, rng, transactions)
        progress(f"  {statements} statements committed")
    finally:
        conn.close()
    progress(f"landing every change up to the source's position {source_position(settings)} into the Iceberg changelog "
             "tables (cdc ingest --until-caught-up)")
    report = Ingestor(settings, catalog).drain(through_source=True)
    progress(f"  {report.changes} changes landed in {report.commits} commits, {report.dead_letters} dead letters")
    progress("merging into the base tables with Spark (cdc merge)")
    from cdc.spark import session
    from spark_jobs.merge import merge_table

    spark = session(settings)
    for t in TABLES:
        result = merge_table(spark, settings.catalog.name, DB, t, settings.merge.tombstone_days)
        progress(f"  {DB}.{t}: {result.changes} changes merged in {result.seconds:.1f} s")
    progress("comparing every table with its source")
    catalog = open_catalog(settings)
    return [compare_table(settings, catalog, TableId(DB, t)) for t in TABLES], report
