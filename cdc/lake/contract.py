"""The lake contract: every name the landing side (`cdc/`) and the Spark jobs (`spark_jobs/`) share.

Dependency-free on purpose: `spark_jobs/` imports it under `spark-submit` too, where nothing but
PySpark is installed. Change a name here and both sides change with it.
"""

from __future__ import annotations

# ---- table names: <db>.<table> (base), and beside it:
CHANGELOG_SUFFIX = "_changelog"
TOMBSTONES_SUFFIX = "_tombstones"

# ---- metadata columns (base and changelog: _seq, _source_ts; the changelog adds the rest)
OP = "_op"
SEQ = "_seq"
SOURCE_TS = "_source_ts"
INGESTED_AT = "_ingested_at"
KAFKA_TOPIC = "_kafka_topic"
KAFKA_PARTITION = "_kafka_partition"
KAFKA_OFFSET = "_kafka_offset"
# the changelog's landing number: every landing commit of a changelog table gives its rows the next number
# (LANDED + 1). A row keeps it through compaction and expiry, so "merged" is a row predicate
# (`_cdc_landed <= MERGED_LANDED`), not a set of snapshots or files maintenance can rewrite or remove.
# NULL: landed before the column existed (the first merge after the upgrade takes them by snapshot).
LANDED_COLUMN = "_cdc_landed"
METADATA_COLUMNS = (OP, SEQ, SOURCE_TS, INGESTED_AT, KAFKA_TOPIC, KAFKA_PARTITION, KAFKA_OFFSET, LANDED_COLUMN)
CHANGELOG_ONLY = (OP, INGESTED_AT, KAFKA_TOPIC, KAFKA_PARTITION, KAFKA_OFFSET, LANDED_COLUMN)
# names the merge job uses for its own helper columns and views
RANK = "_cdc_rank"
LATEST_VIEW = "_cdc_latest"
SOURCE_VIEW = "_cdc_changes"
# a source column may not take any of these names, compared case-insensitively (Spark resolves
# columns case-insensitively), nor start with `_cdc_`
RESERVED_PREFIX = "_cdc_"


def reserved_name(column: str) -> bool:
    """Whether a source column name collides with the lake's own columns (in any letter case)."""
    lowered = column.lower()
    return lowered in {c.lower() for c in METADATA_COLUMNS} or lowered.startswith(RESERVED_PREFIX)


# ---- table properties
PROP_KEY = "cdc.primary-key"  # JSON list of the key columns
PROP_SOURCE = "cdc.source-table"  # db.table at the source
PROP_KIND = "cdc.kind"  # base | changelog | tombstones
PROP_TOPIC = "cdc.topic"  # the Kafka topic a changelog lands from
TRUNCATED_BEFORE = "cdc.truncated-before-seq"  # the truncate floor (base table)
# schema changes (see cdc/lake/evolution.py). Base: rows older than an ADD COLUMN read its default, and a
# column dropped under `dropped_columns: keep` is frozen: JSON {column: {"below": seq, "type": iceberg type,
# "text": value}} and {column: seq of the drop}. Changelog: the renames, for older events replayed
# later ([[seq, old, new], ...]), and the position the lake's schema was last changed at.
COLUMN_DEFAULTS = "cdc.column-defaults"
FROZEN_COLUMNS = "cdc.frozen-columns"
RENAMES = "cdc.renames"
SCHEMA_SEQ = "cdc.schema-seq"

# pyiceberg retries a commit that lost a race by re-applying the append on top of the winner's:
# that would skip the landing's own offsets check, so landing tables (changelog, dead letters)
# surface the conflict instead and `cdc.ingest.commit` reloads, filters again and retries
LANDING_TABLE_PROPERTIES = {"commit.retry.num-retries": "0"}

# ---- bookkeeping: snapshot summary properties that are ALSO table properties
# Maintenance (compaction, snapshot expiry, manifest rewrites, orphan removal; ours or a standard Iceberg
# job) makes snapshots without these summaries and removes old snapshots, but never touches table
# properties. So each is written twice: in the summary of the commit it describes and, in the same
# metadata commit (landing) or right after the publish (merge), as a table property. Readers take the
# newer of the two (`cdc.lake.bookkeeping`, and spark_jobs/merge.py for the Spark side).
OFFSETS = "cdc.kafka-offsets"  # next Kafka offset per topic and partition (changelog and DLQ commits)
TOPIC_IDS = "cdc.kafka-topic-ids"  # the Kafka topic id each recorded topic had (a recreated topic has a new one)
LANDED = "cdc.landed"  # changelog: the landing number of its newest landing commit (see LANDED_COLUMN)
MERGED_LANDED = "cdc.merged-landed"  # base: every changelog row with `_cdc_landed` <= this is folded in
MERGED_UPTO = "cdc.merged-changelog-snapshot"  # the changelog snapshot a base commit folded in
APPLIED_SEQ = "cdc.multiset-applied-seq"  # base of a keyless table: the newest `_seq` the fold has applied
BOOTSTRAP_POSITION = "cdc.bootstrap-position"  # binlog file:position of a bootstrap snapshot
BOOTSTRAP_SEQ = "cdc.bootstrap-seq"  # the `_seq` its rows carry (just below the first change after it)
# the freshness contract: every change at the source before this point is in the table. JSON
# {"seq": "<_seq of the point, as text>", "position": "<binlog file>:<pos>", "ts_ms": <source wall time of the point>}.
# A base commit (merge) records it in its summary; the landing records it per table in the `cdc_state`
# namespace (LANDED_THROUGH_PREFIX) for its changelog.
COMPLETE_THROUGH = "cdc.complete-through"
# what a base table's summaries record and maintenance must not take away: pinned as table properties after
# every publish (merge, bootstrap) and before every snapshot expiry `cdc maintain` runs
BASE_BOOKKEEPING = (MERGED_LANDED, MERGED_UPTO, TRUNCATED_BEFORE, COMPLETE_THROUGH, APPLIED_SEQ, BOOTSTRAP_SEQ,
                    BOOTSTRAP_POSITION)

# ---- namespace properties
CAPTURE = "cdc.capture"  # "true": the database was added to capture by `cdc bootstrap`
HALTED_PREFIX = "cdc.halted."  # + table name: JSON {reason, remedy, since, offsets}
LANDED_THROUGH_PREFIX = "cdc.landed-through."  # + table name (cdc_state namespace): the changelog's COMPLETE_THROUGH JSON
