"""The Iceberg catalog and the lake's tables: names, creation, and what their snapshots record."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError, TableAlreadyExistsError
from pyiceberg.table import Table

from cdc.config import MergeMode, Settings
from cdc.events.model import TableId, TableSchema
from cdc.lake import schema as lake_schema
from cdc.lake.contract import (  # re-exported: other modules name them through here
    CAPTURE as CAPTURE,
    CHANGELOG_SUFFIX as CHANGELOG_SUFFIX,
    LANDING_TABLE_PROPERTIES,
    MERGED_UPTO as MERGED_UPTO,
    OFFSETS as OFFSETS,
    PROP_KEY as PROP_KEY,
    PROP_KIND as PROP_KIND,
    PROP_SOURCE as PROP_SOURCE,
    SCHEMA_SEQ,
    TOMBSTONES_SUFFIX as TOMBSTONES_SUFFIX,
)

log = logging.getLogger(__name__)


# Format version 2 on purpose: merge-on-read then writes position-delete files. Deletion vectors (the compact
# successor of position deletes) need format version 3, and pyiceberg 0.12 cannot write v3 table metadata at all
# ("Writing V3 is not yet supported", pyiceberg/table/metadata.py; it reads v3 deletion vectors, pyarrow.py
# _read_deletes): the landing (schema evolution) and the bootstrap commit to base tables with pyiceberg, so on v3
# every such commit would fail. Never equality deletes either: Spark's MERGE writes none, and pyiceberg
# 0.12 (`cdc check`, `cdc sql`) cannot read them.
BASE_PROPERTIES = {
    "format-version": "2",
    "write.merge.mode": "merge-on-read",
    "write.update.mode": "merge-on-read",
    "write.delete.mode": "merge-on-read",
    "write.parquet.compression-codec": "zstd",
}
# how Spark's MERGE, UPDATE and DELETE write a base table: its merge mode (tables.<t>.merge_mode, default merge.mode);
# the merge job brings them in line when the setting changes (spark_jobs/base_merge.py)
WRITE_MODE_PROPERTIES = ("write.merge.mode", "write.update.mode", "write.delete.mode")


def base_properties(mode: MergeMode) -> dict[str, str]:
    """The base table's properties at creation, for its merge mode."""
    return {**BASE_PROPERTIES, **dict.fromkeys(WRITE_MODE_PROPERTIES, mode)}


def open_catalog(settings: Settings) -> Catalog:
    """pyiceberg's view of the shared catalog (same name and tables as Spark's JdbcCatalog)."""
    props = settings.catalog_properties()
    if settings.catalog.type == "sql":
        props.setdefault("schema_version", "v1")
        uri = props["uri"]
        if uri.startswith("sqlite:///"):
            path = Path(uri.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            _sqlite_wal(path)
        warehouse = props["warehouse"]
        if warehouse.startswith("file://"):
            Path(warehouse.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    return load_catalog(settings.catalog.name, **props)


def _sqlite_wal(path: Path) -> None:
    # WAL lets pyiceberg and Spark's JDBC catalog read while the other commits
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def changelog_name(table: TableId) -> tuple[str, str]:
    return (table.db, table.table + CHANGELOG_SUFFIX)


def tombstones_name(table: TableId) -> tuple[str, str]:
    return (table.db, table.table + TOMBSTONES_SUFFIX)


def base_name(table: TableId) -> tuple[str, str]:
    return (table.db, table.table)


def _ensure_namespace(catalog: Catalog, namespace: str) -> None:
    try:
        catalog.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass


def _create(
    catalog: Catalog, ident: tuple[str, str], columns: list[Any], key: tuple[str, ...], buckets: int, props: dict[str, str]
) -> Table:
    schema = lake_schema.iceberg_schema(columns)
    spec = lake_schema.bucket_spec(schema, key, buckets)
    try:
        return catalog.create_table(ident, schema=schema, partition_spec=spec, properties=props)
    except TableAlreadyExistsError:
        return catalog.load_table(ident)


def ensure_tables(catalog: Catalog, settings: Settings, table: TableId, source: TableSchema, schema_seq: int = 0) -> Table:
    """Create the changelog and base tables of `table` on first sight; return the changelog table.
    `schema_seq`: the source position the schema holds from (schema changes before it are not the lake's)."""
    try:
        return catalog.load_table(changelog_name(table))
    except NoSuchTableError:
        pass
    _ensure_namespace(catalog, table.db)
    buckets = settings.buckets_for(table.db, table.table)
    common = {PROP_KEY: json.dumps(list(source.key)), PROP_SOURCE: str(table)}
    try:
        catalog.load_table(base_name(table))
    except NoSuchTableError:
        _create(catalog, base_name(table), lake_schema.lake_columns(source, changelog=False), source.key, buckets,
                {**base_properties(settings.merge_mode_for(table.db, table.table)), **common, PROP_KIND: "base"})
    create_tombstones(catalog, table, source, buckets)
    log.info("creating lake tables for %s (bucket(%d, %s))", table, buckets, source.key[0] if source.key else "-")
    return _create(catalog, changelog_name(table), lake_schema.lake_columns(source, changelog=True), source.key, buckets,
                   {"format-version": "2", "write.parquet.compression-codec": "zstd", **LANDING_TABLE_PROPERTIES, **common,
                    PROP_KIND: "changelog", SCHEMA_SEQ: str(schema_seq)})


def create_tombstones(catalog: Catalog, table: TableId, source: TableSchema, buckets: int) -> Table:
    """The table of deleted keys (see spark_jobs/merge_sql.py), keyed and bucketed like the base."""
    common = {PROP_KEY: json.dumps(list(source.key)), PROP_SOURCE: str(table)}
    return _create(catalog, tombstones_name(table), lake_schema.tombstone_columns(source), source.key, buckets,
                   {**BASE_PROPERTIES, **common, PROP_KIND: "tombstones"})


def mark_captured(catalog: Catalog, db: str) -> None:
    """Record that `db` was added to capture on demand (read by `connectors.apply` and the consumer)."""
    _ensure_namespace(catalog, db)
    catalog.update_namespace_properties(db, updates={CAPTURE: "true"})


def landing_table(table: Table) -> Table:
    """`table` with the landing tables' properties (set once on tables created before they existed)."""
    if all(table.properties.get(k) == v for k, v in LANDING_TABLE_PROPERTIES.items()):
        return table
    with table.transaction() as tx:
        tx.set_properties(LANDING_TABLE_PROPERTIES)
    log.info("%s: set %s", ".".join(table.name()), LANDING_TABLE_PROPERTIES)
    return table


def captured_namespaces(catalog: Catalog) -> list[str]:
    """Databases `cdc bootstrap` added to capture (lake namespaces marked `cdc.capture`)."""
    return sorted(
        str(ns[0]) for ns in catalog.list_namespaces()
        if catalog.load_namespace_properties(ns).get(CAPTURE) == "true"
    )


def ancestors(table: Table) -> Iterator[Any]:
    """The current snapshot and its ancestors, newest first."""
    snapshot = table.current_snapshot()
    while snapshot is not None:
        yield snapshot
        if snapshot.parent_snapshot_id is None:
            return
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id)


def lake_tables(catalog: Catalog) -> list[TableId]:
    """Every source table that has a changelog table in the lake."""
    found: list[TableId] = []
    for ns in catalog.list_namespaces():
        for ident in catalog.list_tables(ns):
            name = ident[-1]
            if name.endswith(CHANGELOG_SUFFIX):
                found.append(TableId(".".join(ns), name.removesuffix(CHANGELOG_SUFFIX)))
    return sorted(found, key=str)
