"""Render the connector definitions in `connectors/` from settings and apply them over Connect's REST API."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cdc.config import Settings
from cdc.errors import ConfigError, ServiceError
from cdc.stack.services import Connect

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


def included_databases(settings: Settings, added: Sequence[str] = ()) -> list[str]:
    """Pure: the connector's include list: settings, databases added by `cdc bootstrap`, the marker.

    Empty means every non-system database (the default), and then nothing needs adding.
    """
    if not settings.connect.include_databases:
        return []
    return sorted({*settings.connect.include_databases, *added, MARKER_DB})


def debezium_config(settings: Settings, secrets_file: Path, added: Sequence[str] = ()) -> dict[str, str]:
    template = (CONNECTORS_DIR / DEBEZIUM_TEMPLATE).read_text()
    return render(
        template,
        {
            "mariadb_host": settings.mariadb.host,
            "mariadb_port": str(settings.mariadb.port),
            "debezium_user": settings.mariadb.debezium_user,
            "secrets_file": str(secrets_file),
            "server_id": str(settings.connect.database_server_id),
            "topic_prefix": settings.connect.topic_prefix,
            "include_databases": ",".join(included_databases(settings, added)),
            "exclude_databases": ",".join(settings.connect.exclude_databases),
            "bootstrap": settings.kafka.bootstrap_servers,
        },
    )


def _request(url: str, method: str = "GET", body: Any = None) -> Any:
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
        raise ServiceError(f"Kafka Connect refused {method} {url}: {exc.code} {detail}") from exc
    except urllib.error.URLError as exc:
        raise ServiceError(f"Kafka Connect is not reachable at {url}: {exc.reason}") from exc


def connector_state(settings: Settings) -> dict[str, Any] | None:
    name = settings.connect.connector_name
    try:
        status = _request(f"{settings.connect.url}/connectors/{name}/status")
    except ServiceError as exc:
        if " 404 " in str(exc):
            return None
        raise
    return status if isinstance(status, dict) else None


def apply(settings: Settings, timeout: float = 90.0) -> str:
    """Create or update the Debezium connector and wait until it and its task run.

    Databases that `cdc bootstrap` added to capture (lake namespaces marked `cdc.capture`) stay
    included, so applying the settings again never drops a table that was added on demand.
    """
    from cdc.lake.catalog import captured_namespaces, open_catalog

    connect = Connect(settings)
    connect.write_secrets()
    added = captured_namespaces(open_catalog(settings)) if settings.connect.include_databases else []
    config = debezium_config(settings, connect.secrets_file(), added)
    name = settings.connect.connector_name
    _request(f"{settings.connect.url}/connectors/{name}/config", "PUT", config)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = connector_state(settings) or {}
        connector = status.get("connector", {}).get("state")
        tasks = status.get("tasks", [])
        failed = [t for t in tasks if t.get("state") == "FAILED"]
        if connector == "FAILED" or failed:
            trace = (failed[0] if failed else status.get("connector", {})).get("trace", "")
            first = trace.strip().splitlines()[0] if trace else "no trace"
            raise ServiceError(f"connector {name} failed to start: {first}", str(connect.files.log_file))
        if connector == "RUNNING" and tasks and all(t.get("state") == "RUNNING" for t in tasks):
            log.info("connector %s is running", name)
            return name
        time.sleep(1)
    raise ServiceError(f"connector {name} did not reach RUNNING within {timeout:.0f} s", str(connect.files.log_file))


def delete(settings: Settings) -> None:
    name = settings.connect.connector_name
    if connector_state(settings) is not None:
        _request(f"{settings.connect.url}/connectors/{name}", "DELETE")


MARKER_DB = "cdc_marker"
MARKER_TABLE = "ping"


def _marker_seen(settings: Settings, topic: str, token: int) -> bool:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka.client_config(), "group.id": "cdc-capture-probe", "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return False
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, max(low, high - 20))])
            for msg in consumer.consume(20, timeout=5):
                value = msg.value()
                if msg.error() is None and value:
                    after = json.loads(value).get("payload", {}).get("after") or {}
                    if after.get("token") == token:
                        return True
    finally:
        consumer.close()
    return False


def wait_captured(settings: Settings, timeout: float = 120.0) -> None:
    """Wait until every transaction committed at the source so far is in Kafka.

    Writes a marker row into `cdc_marker.ping` and waits for its change event: Debezium publishes
    in binlog order, so once the marker is in Kafka every earlier transaction is too (a check on
    an earlier transaction's own events could see its first rows and miss its last).
    """
    from cdc.source import connect

    token = time.time_ns()
    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {MARKER_DB}")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {MARKER_DB}.{MARKER_TABLE} (id INT PRIMARY KEY, token BIGINT NOT NULL)")
        cur.execute(f"REPLACE INTO {MARKER_DB}.{MARKER_TABLE} VALUES (1, %s)", (token,))  # noqa: S608 - constants
        conn.commit()
    finally:
        conn.close()
    topic = f"{settings.connect.topic_prefix}.{MARKER_DB}.{MARKER_TABLE}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _marker_seen(settings, topic, token):
            return
        time.sleep(0.3)
    raise ServiceError(
        f"Debezium did not publish the capture marker within {timeout:.0f} s", str(Connect(settings).files.log_file)
    )
