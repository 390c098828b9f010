"""Where the JVM artifacts live: the layout of the cache `cdc stack install` fills (`~/.cache/cdc`).

Read by the Spark session (its jars) and by the local stack (Kafka, Connect, Debezium); the
resolving itself is the local stack's (`cdc.stack.jars`).
"""

from __future__ import annotations

from pathlib import Path

from cdc.errors import ServiceError

KAFKA_VERSION = "4.1.1"
DEBEZIUM_VERSION = "3.5.0.Final"
ICEBERG_VERSION = "1.12.0"
DEBEZIUM_PLUGIN = f"io.debezium:debezium-connector-mariadb:{DEBEZIUM_VERSION}:tar.gz:plugin"


def kafka_dir(cache: Path) -> Path:
    return cache / "jars" / f"kafka-{KAFKA_VERSION}"


def spark_dir(cache: Path) -> Path:
    return cache / "jars" / f"spark-iceberg-{ICEBERG_VERSION}"


def plugin_dir(cache: Path) -> Path:
    return cache / "plugins" / f"debezium-{DEBEZIUM_VERSION}"


def spark_jars(cache: Path) -> list[Path]:
    folder = spark_dir(cache)
    if not (folder / ".complete").exists():
        raise ServiceError(f"Spark/Iceberg jars are missing in {folder}: run `make setup` or `cdc stack install`")
    return sorted(folder.glob("*.jar"))
