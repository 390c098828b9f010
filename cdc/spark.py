"""A local Spark session on the shared catalog (the same catalog name and tables as pyiceberg)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cdc import jvm
from cdc.config import Settings
from cdc.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def jdbc_catalog_conf(settings: Settings) -> dict[str, str]:
    """Pure: Spark catalog properties for the settings' catalog (pyiceberg SQL -> Iceberg JDBC)."""
    prefix = f"spark.sql.catalog.{settings.catalog.name}"
    # no table cache: the landing consumer commits to the same tables from another process
    conf = {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.warehouse": settings.warehouse,
        f"{prefix}.cache-enabled": "false",
    }
    if settings.catalog.type == "rest":
        conf[f"{prefix}.type"] = "rest"
        conf[f"{prefix}.uri"] = settings.catalog_uri
        return conf
    uri = settings.catalog_uri
    conf[f"{prefix}.type"] = "jdbc"
    conf[f"{prefix}.jdbc.schema-version"] = "V1"
    if uri.startswith("sqlite:///"):
        conf[f"{prefix}.uri"] = "jdbc:sqlite:" + uri.removeprefix("sqlite:///")
    elif uri.startswith("postgresql"):
        parts = urlsplit(uri)
        conf[f"{prefix}.uri"] = f"jdbc:postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"
        if parts.username:
            conf[f"{prefix}.jdbc.user"] = parts.username
        if parts.password:
            conf[f"{prefix}.jdbc.password"] = parts.password
    else:
        raise ConfigError(f"catalog uri {uri.split(':', 1)[0]}:… is not supported for Spark (sqlite or postgresql)")
    return conf


def session_conf(settings: Settings) -> dict[str, str]:
    jar_paths = ",".join(str(p) for p in jvm.spark_jars(settings.cache))
    return {
        "spark.master": settings.spark.master,
        "spark.driver.memory": settings.spark.driver_memory,
        "spark.jars": jar_paths,
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.sql.sources.v2.bucketing.enabled": "true",
        "spark.sql.iceberg.planning.preserve-data-grouping": "true",
        "spark.sql.requireAllClusterKeysForCoPartition": "false",
        "spark.sql.sources.v2.bucketing.pushPartValues.enabled": "true",
        "spark.sql.adaptive.enabled": "true",
        **jdbc_catalog_conf(settings),
    }


def session(settings: Settings) -> SparkSession:
    """Build (or reuse) the local session; starting one costs ~15 s, so callers share it."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName("cdc")
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
