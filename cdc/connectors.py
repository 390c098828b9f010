"""Render the connector definitions in `connectors/` from settings and apply them over Connect's REST API."""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from cdc.config import Settings
from cdc.errors import ConfigError, ServiceError, TransientError
from cdc.ingest.capture import MARKER_DB, included_databases
from cdc.retry import RetryPolicy, retrying

log = logging.getLogger(__name__)

CONNECTORS_DIR = Path(__file__).resolve().parent.parent / "connectors"
DEBEZIUM_TEMPLATE = "debezium-mariadb.json"


def render(template: str, values: dict[str, str]) -> dict[str, str]:
    """Pure: fill `{{name}}` placeholders; an unknown or unfilled placeholder is an error."""
    doc = json.loads(template)
    out: dict[str, str] = {}
    for key, raw in doc.items():
        if key.startswith("_"):
            continue
        value = str(raw)
        for name, filled in values.items():
            value = value.replace("{{" + name + "}}", filled)
        if "{{" in value:
            raise ConfigError(f"connector setting {key} has an unfilled placeholder: {value}")
        if value == "":
            continue  # an empty include/exclude list means "not set"
        out[key] = value
    return out


_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def _sasl(settings: Settings) -> bool:
    return settings.kafka.security_protocol in ("SASL_SSL", "SASL_PLAINTEXT")


def _jaas_config(settings: Settings) -> str:
    """Pure: the schema-history clients' JAAS line (it holds the SASL password: only in the secrets file)."""
    kafka = settings.kafka
    module = _LOGIN_MODULES.get(kafka.sasl_mechanism or "")
    if module is None:
        raise ConfigError(
            f"kafka.sasl_mechanism {kafka.sasl_mechanism!r} is not supported for the connector's schema history "
            f"(one of {', '.join(_LOGIN_MODULES)})"
        )

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    return f"{module} required username={quoted(kafka.sasl_username or '')} password={quoted(password)};"


def _property(key: str, value: str) -> str:
    """One Java properties line (what FileConfigProvider reads with Properties.load)."""
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    if escaped.startswith((" ", "\t")):
        escaped = "\\" + escaped
    return f"{key}={escaped}\n"


def connector_secrets(settings: Settings) -> dict[str, str]:
    """Pure: every secret the connector reads through Connect's FileConfigProvider, by its key in the file."""
    out = {"database.password": settings.debezium_password().get_secret_value()}
    if settings.mariadb.ssl_truststore_password is not None:
        out["database.ssl.truststore.password"] = settings.mariadb.ssl_truststore_password.get_secret_value()
    if settings.mariadb.ssl_keystore_password is not None:
        out["database.ssl.keystore.password"] = settings.mariadb.ssl_keystore_password.get_secret_value()
    if _sasl(settings):
        out["kafka.sasl.jaas.config"] = _jaas_config(settings)
    if settings.kafka.ssl_truststore_password is not None:
        out["kafka.ssl.truststore.password"] = settings.kafka.ssl_truststore_password.get_secret_value()
    return out


def write_secrets(settings: Settings) -> None:
    """The connector's secrets in a 0600 file that Connect's FileConfigProvider reads, never inline.

    An operator-provided `connect.secrets_file` must hold the same keys (`connector_secrets`).
    """
    path = settings.connector_secrets_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(_property(k, v) for k, v in connector_secrets(settings).items())


def _truststore_type(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return {".pem": "PEM", ".crt": "PEM", ".p12": "PKCS12", ".pfx": "PKCS12"}.get(suffix, "JKS")


def excluded_column_patterns(settings: Settings) -> list[str]:
    """Pure: Debezium's `column.exclude.list`: each `db.table.column` as a regular expression matching only itself."""
    out = []
    for name, override in sorted(settings.tables.items()):
        for column in override.exclude_columns:
            out.append(_java_regex_literal(f"{name}.{column}"))
    return out


def _java_regex_literal(text: str) -> str:
    # a backslash before any ASCII character that is not a letter or a digit makes it literal in Java
    return "".join(f"\\{ch}" if ch.isascii() and not ch.isalnum() and ch != "_" else ch for ch in text)


# Debezium splits `message.key.columns` on `;` (tables), `:` (table from columns) and `,` (columns), and
# refuses an entry with whitespace: a name holding one of these cannot be declared there
_KEY_UNSAFE = frozenset(";:,") | frozenset(" \t\n\r\f\v")


def message_key_columns(settings: Settings) -> str:
    """Pure: Debezium's `message.key.columns` from every `tables.<db.table>.key`.

    Entries `<db>.<table>:<col>,<col>` separated by `;`. Debezium turns each column into the regular
    expression `<db>.<table>.<col>`, matched case-insensitively against the whole column id, and puts
    the matched columns into the message key in the order declared: every name is escaped so it matches
    only itself.
    """
    entries = []
    for name, override in sorted(settings.tables.items()):
        if not override.key:
            continue
        db, sep, table = name.partition(".")
        if not sep or not db or not table or "." in table:
            raise ConfigError(f"tables.{name}.key: the table must be named DB.TABLE")
        left_out = sorted(set(override.key) & set(override.exclude_columns))
        if left_out:
            raise ConfigError(f"tables.{name}.key: columns {left_out} are in tables.{name}.exclude_columns: a key cannot be left out")
        bad = [n for n in (db, table, *override.key) if _KEY_UNSAFE.intersection(n)]
        if bad:
            raise ConfigError(f"tables.{name}.key: Debezium's message.key.columns cannot name {bad} "
                              "(whitespace, `;`, `:` or `,`): rename them at the source")
        columns = ",".join(_java_regex_literal(c) for c in override.key)
        entries.append(f"{_java_regex_literal(db)}\\.{_java_regex_literal(table)}:{columns}")
    return ";".join(entries)


def check_declared_keys(settings: Settings) -> None:
    """Refuse (ConfigError) a declared key that names a column its table lacks or differs from the table's
    primary key, for the declared tables that exist at the source now (a table created later is checked by
    its `cdc bootstrap`). Reads the source only when some key is declared."""
    declared = {name: o.key for name, o in sorted(settings.tables.items()) if o.key}
    if not declared:
        return
    from cdc.bootstrap.keys import primary_key, resolve_key
    from cdc.events.model import TableId
    from cdc.source import connect

    conn = connect(settings)
    try:
        cur = conn.cursor()
        for name, key in declared.items():
            table = TableId.parse(name)
            cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                        (table.db, table.table))
            columns = [str(r[0]) for r in cur.fetchall()]
            if columns:
                resolve_key(table, columns, primary_key(cur, table), key)
    finally:
        conn.close()


def debezium_config(settings: Settings, secrets_file: Path, added: Sequence[str] = ()) -> dict[str, str]:
    def secret(key: str, present: bool) -> str:
        return f"${{file:{secrets_file}:{key}}}" if present else ""  # empty: the setting is left out

    db, kafka = settings.mariadb, settings.kafka
    if _sasl(settings):
        _jaas_config(settings)  # refuses a mechanism without a login module before anything is applied
    template = (CONNECTORS_DIR / DEBEZIUM_TEMPLATE).read_text()
    config = render(
        template,
        {
            "mariadb_host": db.host,
            "mariadb_port": str(db.port),
            "debezium_user": db.debezium_user,
            "secrets_file": str(secrets_file),
            "mariadb_ssl_mode": db.ssl_mode,
            "mariadb_ssl_truststore": db.ssl_truststore or "",
            "mariadb_ssl_truststore_password": secret("database.ssl.truststore.password", db.ssl_truststore_password is not None),
            "mariadb_ssl_keystore": db.ssl_keystore or "",
            "mariadb_ssl_keystore_password": secret("database.ssl.keystore.password", db.ssl_keystore_password is not None),
            "server_id": str(settings.connect.database_server_id),
            "topic_prefix": settings.connect.topic_prefix,
            "include_databases": ",".join(included_databases(settings, added)),
            "exclude_databases": ",".join(settings.connect.exclude_databases),
            "exclude_columns": ",".join(excluded_column_patterns(settings)),
            "bootstrap": kafka.bootstrap_servers,
            "kafka_security_protocol": kafka.security_protocol,
            "kafka_sasl_mechanism": (kafka.sasl_mechanism or "") if _sasl(settings) else "",
            "kafka_sasl_jaas_config": secret("kafka.sasl.jaas.config", _sasl(settings)),
            "kafka_ssl_truststore": kafka.ssl_truststore or "",
            "kafka_ssl_truststore_type": _truststore_type(kafka.ssl_truststore) if kafka.ssl_truststore else "",
            "kafka_ssl_truststore_password": secret("kafka.ssl.truststore.password", kafka.ssl_truststore_password is not None),
        },
    )
    keys = message_key_columns(settings)
    if keys:  # a declared key for a table without a primary key (tables.<db.table>.key)
        config["message.key.columns"] = keys
    return config


# Connect answers 409 while its workers rebalance and 5xx while it starts: both pass
CONNECT_POLICY = RetryPolicy(deadline_seconds=60, first_delay=0.5, max_delay=5)


def _request(url: str, method: str = "GET", body: Any = None) -> Any:
    """One Connect REST call under the retry policy: unreachable, 409 and 5xx retry; other refusals do not."""
    return retrying(f"Kafka Connect {method} {url}", CONNECT_POLICY, lambda: _request_once(url, method, body))


def _request_once(url: str, method: str, body: Any) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            text = resp.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("message", detail)
        except (ValueError, AttributeError):
            pass
        if exc.code >= 500 or exc.code == 409:
            raise TransientError(f"Kafka Connect answered {method} {url}: {exc.code} {detail}") from exc
        raise ServiceError(f"Kafka Connect refused {method} {url}: {exc.code} {detail}") from exc
    except urllib.error.URLError as exc:
        raise TransientError(f"Kafka Connect is not reachable at {url}: {exc.reason}") from exc


def connector_state(settings: Settings) -> dict[str, Any] | None:
    name = settings.connect.connector_name
    try:
        status = _request(f"{settings.connect.url}/connectors/{name}/status")
    except ServiceError as exc:
        if " 404 " in str(exc):
            return None
        raise
    return status if isinstance(status, dict) else None


class TaskState(NamedTuple):
    """One line of `cdc connectors status`: the connector itself (task "connector") or one of its tasks."""

    name: str
    task: str
    state: str
    worker: str
    trace: str  # the first line of a failed one's trace


def task_states(settings: Settings) -> list[TaskState]:
    """The connector's and its tasks' states from Connect's REST API; empty when the connector does not exist."""
    status = connector_state(settings)
    if status is None:
        return []
    name = str(status.get("name", settings.connect.connector_name))

    def row(task: str, doc: dict[str, Any]) -> TaskState:
        trace = str(doc.get("trace") or "").strip()
        return TaskState(name, task, str(doc.get("state", "UNKNOWN")), str(doc.get("worker_id", "")),
                         trace.splitlines()[0] if trace else "")

    tasks = sorted(status.get("tasks", []), key=lambda t: int(t.get("id", 0)))
    return [row("connector", status.get("connector", {})), *(row(str(t.get("id")), t) for t in tasks)]


def wait_running(settings: Settings, timeout: float = 90.0) -> list[TaskState]:
    """Wait until the connector and every task run; a FAILED one is a `ServiceError` naming its trace's first line."""
    name = settings.connect.connector_name
    deadline = time.monotonic() + timeout
    rows: list[TaskState] = []
    while time.monotonic() < deadline:
        rows = task_states(settings)
        failed = [r for r in rows if r.state == "FAILED"]
        if failed:
            raise ServiceError(f"connector {name} {failed[0].task} failed: {failed[0].trace or 'no trace'} (see the Connect worker's log)")
        if len(rows) > 1 and all(r.state == "RUNNING" for r in rows):
            return rows
        time.sleep(1)
    states = ", ".join(f"{r.task} {r.state}" for r in rows) or "not found"
    raise ServiceError(f"connector {name} did not reach RUNNING within {timeout:.0f} s ({states}; see the Connect worker's log)")


def restart(settings: Settings, timeout: float = 90.0) -> list[TaskState]:
    """Restart the connector and all its tasks, and wait until they run again."""
    name = settings.connect.connector_name
    if connector_state(settings) is None:
        raise ServiceError(f"connector {name} does not exist at {settings.connect.url}: run `cdc connectors apply`")
    _request(f"{settings.connect.url}/connectors/{name}/restart?includeTasks=true&onlyFailed=false", "POST")
    log.info("connector %s: restart requested", name)
    # the status topic shows RESTARTING a moment after the request: until then RUNNING is the old state
    settle = time.monotonic() + min(10.0, timeout / 3)
    while time.monotonic() < settle and all(r.state == "RUNNING" for r in task_states(settings)):
        time.sleep(0.2)
    return wait_running(settings, timeout)


def _wait_task_configs(settings: Settings, config: dict[str, str], timeout: float) -> None:
    name = settings.connect.connector_name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = _request(f"{settings.connect.url}/connectors/{name}/tasks") or []
        if tasks and all(all(t.get("config", {}).get(k) == v for k, v in config.items()) for t in tasks):
            return
        time.sleep(0.5)
    raise ServiceError(f"connector {name}: its tasks did not take the new configuration within {timeout:.0f} s")


def apply(settings: Settings, timeout: float = 90.0) -> str:
    """Create or update the Debezium connector and wait until it and its task run.

    Databases that `cdc bootstrap` added to capture (lake namespaces marked `cdc.capture`) stay
    included, so applying the settings again never drops a table that was added on demand.
    """
    from cdc.lake.catalog import captured_namespaces, open_catalog

    if settings.connect.secrets_file is None:
        write_secrets(settings)  # the local stack's worker reads it from under CDC_HOME
    added = captured_namespaces(open_catalog(settings)) if settings.connect.include_databases else []
    config = debezium_config(settings, settings.connector_secrets_file(), added)
    check_declared_keys(settings)
    name = settings.connect.connector_name
    before = _request(f"{settings.connect.url}/connectors/{name}/config") if connector_state(settings) is not None else None
    _request(f"{settings.connect.url}/connectors/{name}/config", "PUT", config)
    if isinstance(before, dict) and {k: v for k, v in before.items() if k != "name"} != config:
        # a changed configuration (an exclusion, an include list) holds only from the task that runs it:
        # wait until the task configs carry it, then restart so no event is captured under the old one
        _wait_task_configs(settings, config, timeout)
        restart(settings, timeout)
        log.info("connector %s runs the new configuration", name)
        return name
    wait_running(settings, timeout)
    log.info("connector %s is running", name)
    return name


def delete(settings: Settings) -> None:
    name = settings.connect.connector_name
    if connector_state(settings) is not None:
        _request(f"{settings.connect.url}/connectors/{name}", "DELETE")


MARKER_TABLE = "ping"


def gtid_position(text: str) -> dict[int, int]:
    """Pure: MariaDB GTIDs `domain-server-seq,...` -> the highest seq per domain."""
    out: dict[int, int] = {}
    for part in text.replace("\n", "").split(","):
        if part.strip():
            domain, _server, seq = (int(x) for x in part.strip().split("-"))
            out[domain] = max(seq, out.get(domain, 0))
    return out


def committed_gtids(settings: Settings) -> dict[int, int]:
    """The GTIDs Connect has committed source offsets for: every record up to them was acknowledged."""
    doc = _request(f"{settings.connect.url}/connectors/{settings.connect.connector_name}/offsets")
    for entry in (doc or {}).get("offsets", []):
        gtids = entry.get("offset", {}).get("gtids")
        if gtids:
            return gtid_position(str(gtids))
    return {}


def covers(have: dict[int, int], target: dict[int, int]) -> bool:
    """Pure: whether GTID position `have` includes every transaction of `target` (per domain)."""
    return all(have.get(d, -1) >= seq for d, seq in target.items())


T = TypeVar("T")


def _last_gtid(cur: Any) -> dict[int, int]:
    """The GTID of the transaction this connection committed last."""
    cur.execute("SELECT @@last_gtid")
    row = cur.fetchone()
    return gtid_position(str(row[0])) if row and row[0] else {}


def write_markers(settings: Settings, after_first: Callable[[Any], T]) -> tuple[T, dict[int, int]]:
    """Commit marker A to the always-captured marker table, call `after_first` on the connection's cursor, commit
    marker B; returns what `after_first` gave and B's GTID.

    Once Connect's committed offset covers A (B's record carries it), every transaction committed at the
    source before A is in Kafka, acknowledged, whatever tables it touched.
    """
    from cdc.source import connect

    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {MARKER_DB}")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {MARKER_DB}.{MARKER_TABLE} (id INT PRIMARY KEY, token BIGINT NOT NULL)")
        marker = f"REPLACE INTO {MARKER_DB}.{MARKER_TABLE} VALUES (1, %s)"  # noqa: S608 - constants
        cur.execute(marker, (time.time_ns(),))
        conn.commit()
        first = after_first(cur)
        cur.execute(marker, (time.time_ns(),))
        conn.commit()
        return first, _last_gtid(cur)
    finally:
        conn.close()


def wait_captured(settings: Settings, timeout: float = 120.0) -> None:
    """Wait until every transaction committed at the source so far is in Kafka, acknowledged.

    Seeing a later event in some topic is not enough: the producer acknowledges partitions
    independently, so after a Connect restart earlier records can still be in flight. Connect
    commits a source offset only when every record before it is acknowledged, and Debezium's
    offset names the transactions completed before the record. So: commit marker A, then marker
    B, and wait until the committed offset covers A's GTID (B's record carries it).
    """
    target, _ = write_markers(settings, _last_gtid)
    deadline = time.monotonic() + timeout
    have: dict[int, int] = {}
    while time.monotonic() < deadline:
        have = committed_gtids(settings)
        if target and covers(have, target):
            return
        time.sleep(0.3)
    raise ServiceError(
        f"Debezium did not capture up to GTID {target} within {timeout:.0f} s (committed: {have}; see the Connect worker's log)"
    )
