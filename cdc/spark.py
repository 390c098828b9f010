"""A local Spark session on the shared catalog (the same catalog name and tables as pyiceberg)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from cdc import jvm
from cdc.config import Settings, is_secret_key
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
            conf[f"{prefix}.jdbc.user"] = unquote(parts.username)
        if parts.password:
            conf[f"{prefix}.jdbc.password"] = unquote(parts.password)
    else:
        raise ConfigError(f"catalog uri {uri.split(':', 1)[0]}:… is not supported for Spark (sqlite or postgresql)")
    return conf


def _is_secret_conf(settings: Settings, key: str) -> bool:
    prefix = f"spark.sql.catalog.{settings.catalog.name}."
    return key.startswith(prefix) and is_secret_key(key.removeprefix(prefix))


def secret_conf(settings: Settings) -> dict[str, str]:
    """Pure: the catalog confs that hold a secret; `session` sets them on the live session only."""
    return {k: v for k, v in jdbc_catalog_conf(settings).items() if _is_secret_conf(settings, k)}


def session_conf(settings: Settings) -> dict[str, str]:
    """The builder's confs: no secret among them (PySpark hands each to `spark-submit --conf k=v`)."""
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
        # a bucket-aligned MERGE: the base joined bucket to bucket in place (a storage-partitioned join). The last one
        # lets Spark shuffle only the change set to the base's buckets; without it Spark 4.1 shuffles the whole base
        # (the change set is a cached view, not an Iceberg scan). = spark_jobs/plan.SPJ_CONFS, which checks the plan
        "spark.sql.sources.v2.bucketing.enabled": "true",
        "spark.sql.iceberg.planning.preserve-data-grouping": "true",
        "spark.sql.requireAllClusterKeysForCoPartition": "false",
        "spark.sql.sources.v2.bucketing.pushPartValues.enabled": "true",
        "spark.sql.sources.v2.bucketing.shuffle.enabled": "true",
        "spark.sql.adaptive.enabled": "true",
        **{k: v for k, v in jdbc_catalog_conf(settings).items() if not _is_secret_conf(settings, k)},
    }


def session(settings: Settings) -> SparkSession:
    """Build (or reuse) the local session; starting one costs ~15 s, so callers share it.

    Secret confs (the catalog password) never go through the builder: PySpark starts the JVM as
    `spark-submit --conf k=v ...`, readable by every local user in /proc/*/cmdline. They are set on the
    live session instead, which works because Iceberg's Spark catalogs are loaded lazily from the
    session conf on first use, after this.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName("cdc")
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    for key, value in secret_conf(settings).items():
        spark.conf.set(key, value)
    spark.sparkContext.setLogLevel("WARN")
    return spark
