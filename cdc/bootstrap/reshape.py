"""Before a rebuild writes its snapshot: the lake tables take the source's current schema and key, by
column name. It is the remedy for every schema change the landing cannot take in place (a type Iceberg
cannot promote, a new primary key, a change under `schema_changes: halt`).

- a column the source no longer has is deleted; a new one is added; a widening evolves in place;
- a column whose type changed beyond a promotion is deleted and added again under its name: a new
  Iceberg field id, so no file written before reads as the new type;
- a new key: the key property, the partition spec (`bucket(N, first key column)`) and a new
  tombstones table; the bookkeeping of earlier schema changes (defaults, frozen columns, renames)
  is cleared, since the snapshot holds every value as it is now.
Readers of `main` keep seeing every row: the snapshot is written to a branch and published in one
commit afterwards (`cdc.bootstrap.snapshot`); until then columns changed here read NULL.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.table import Table
from pyiceberg.transforms import BucketTransform

from cdc.events.model import TableId, TableSchema
from cdc.lake import catalog as lake, evolution, schema as lake_schema
from cdc.lake.contract import COLUMN_DEFAULTS, FROZEN_COLUMNS, PROP_KEY, RENAMES, SCHEMA_SEQ

log = logging.getLogger(__name__)


Changes = tuple[list[str], list[str], list[str], list[tuple[str, Any]]]


def plan(current: dict[str, Any], source: TableSchema, key_only: bool = False) -> Changes:
    """Pure: (delete, retype, add, widen) that turn the lake columns `current` into the source's."""
    wanted = [c for c in source.columns if not key_only or c.name in source.key]
    names = {c.name for c in wanted}
    delete = [n for n in current if n not in names]
    retype: list[str] = []
    add: list[str] = []
    widen: list[tuple[str, Any]] = []
    for c in wanted:
        new, old = lake_schema.iceberg_type(c.type), current.get(c.name)
        if old is None:
            add.append(c.name)
        elif lake_schema.widens(old, new):
            widen.append((c.name, new))
        elif old != new:
            retype.append(c.name)
    return delete, retype, add, widen


def reshape(catalog: Catalog, table: TableId, source: TableSchema, buckets: int, seq: int) -> list[str]:
    """Make the lake tables of `table` take `source` (see the module doc); what changed, for the log."""
    done: list[str] = []
    base = catalog.load_table(lake.base_name(table))
    old_key = tuple(json.loads(base.properties.get(PROP_KEY, "[]")))
    new_key = tuple(source.key)
    for ident, kind in ((lake.base_name(table), "base"), (lake.changelog_name(table), "changelog")):
        target = catalog.load_table(ident)
        props: dict[str, str] = {PROP_KEY: json.dumps(list(new_key))}
        if kind == "base":
            props.update({COLUMN_DEFAULTS: "{}", FROZEN_COLUMNS: "{}"})
        else:
            props.update({RENAMES: "[]", SCHEMA_SEQ: str(seq)})
        changed = _reshape(target, source, buckets, props)
        if changed:
            done.append(f"{'.'.join(ident)}: {changed}")
    if new_key != old_key:
        catalog.drop_table(lake.tombstones_name(table))
        lake.create_tombstones(catalog, table, source, buckets)
        done.append(f"{'.'.join(lake.tombstones_name(table))}: made anew for the key ({', '.join(new_key)})")
    else:
        changed = _reshape(catalog.load_table(lake.tombstones_name(table)), source, buckets, {}, key_only=True)
        if changed:
            done.append(f"{'.'.join(lake.tombstones_name(table))}: {changed}")
    for line in done:
        log.info("%s: rebuild reshapes %s", table, line)
    return done


def _reshape(target: Table, source: TableSchema, buckets: int, props: dict[str, str], key_only: bool = False) -> str:
    current = evolution.lake_source_columns(target.schema())
    delete, retype, add, widen = plan(current, source, key_only)
    by_name = {c.name: c for c in source.columns}
    first = source.key[0] if source.key else None  # a table without a key is unpartitioned
    spec_fields = list(target.spec().fields)
    bucket_name = f"{first}_bucket"
    respec = (not any(f.name == bucket_name for f in spec_fields) or first in retype) if first else bool(spec_fields)
    todo_props = {k: v for k, v in props.items() if target.properties.get(k) != v}
    if not (delete or retype or add or widen or respec or todo_props):
        return ""
    with target.transaction() as tx:
        if respec:  # before a deleted column: a spec may not point at a column that is gone
            with tx.update_spec() as spec:
                for f in spec_fields:
                    spec.remove_field(f.name)
        if delete or retype:
            with tx.update_schema() as update:
                for name in [*delete, *retype]:
                    update.delete_column(name)
        if add or retype or widen:
            with tx.update_schema() as update:
                for name in [*retype, *add]:
                    update.add_column(name, lake_schema.iceberg_type(by_name[name].type))
                for name, wider in widen:
                    update.update_column(name, field_type=wider)
        if respec and first:
            with tx.update_spec() as spec:
                spec.add_field(first, BucketTransform(buckets), bucket_name)
        if todo_props:
            tx.set_properties(todo_props)
    parts = [f"deleted {delete}" if delete else "", f"retyped {retype}" if retype else "", f"added {add}" if add else "",
             f"widened {[n for n, _ in widen]}" if widen else "", f"bucketed by {first}" if respec else ""]
    return ", ".join(p for p in parts if p) or "bookkeeping reset"
