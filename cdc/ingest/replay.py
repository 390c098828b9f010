"""`cdc dlq replay`: decode dead letters again (after a fix) and land the ones that decode now."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field

from pyiceberg.catalog import Catalog

from cdc.config import Settings
from cdc.events.model import ChangeEvent, KafkaCoordinates, Skip
from cdc.ingest import dlq
from cdc.ingest.batch import Raw
from cdc.ingest.capture import CaptureRules
from cdc.ingest.consumer import classify
from cdc.ingest.landing import Lander

log = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    examined: int = 0
    landed: int = 0
    skipped: int = 0
    still_failing: int = 0
    refused: list[str] = field(default_factory=list)  # one line per dead letter kept for being older than the window


def too_old(source_ts_us: int, now_us: int, tombstone_days: int) -> bool:
    """Pure: a change older than the tombstone window may predate a delete of its key whose tombstone has expired;
    landed now, it would bring the deleted row back. Such a change is never replayed."""
    return source_ts_us < now_us - tombstone_days * 86_400_000_000


def refusal(coords: KafkaCoordinates, table: object, source_ts_us: int, tombstone_days: int) -> str:
    when = dt.datetime.fromtimestamp(source_ts_us / 1e6, dt.UTC).isoformat(timespec="seconds")
    return (f"refused: {coords.topic}[{coords.partition}]@{coords.offset} ({table}): the change is from {when}, older than "
            f"the tombstone window (merge.tombstone_days = {tombstone_days}): a delete of its key may have left the lake "
            f"already, and replaying it could bring a deleted row back. It stays in the dead-letter table; take the "
            f"table's current state with `cdc bootstrap {table} --rebuild`")


def replay(settings: Settings, catalog: Catalog) -> ReplayReport:
    report = ReplayReport()
    rules = CaptureRules.from_settings(settings, catalog)
    events: list[ChangeEvent] = []
    raws: list[Raw] = []
    done: list[tuple[str, int, int]] = []
    now_us = int(time.time() * 1_000_000)
    days = settings.merge.tombstone_days
    for row in dlq.raw_rows(catalog):
        report.examined += 1
        coords = KafkaCoordinates(str(row["topic"]), int(str(row["partition"])), int(str(row["offset"])))
        headers = tuple((k, base64.b64decode(v)) for k, v in json.loads(str(row["headers"]))) if row.get("headers") else ()
        key = row["key"] if isinstance(row["key"], bytes) else None
        value = row["value"] if isinstance(row["value"], bytes) else None
        decoded = classify(rules, settings.ingest.max_message_bytes, (key, value, headers), coords,
                           lambda t: settings.table_settings(t.db, t.table).booleans)
        if isinstance(decoded, ChangeEvent) and too_old(decoded.source_ts_us, now_us, days):
            report.refused.append(refusal(coords, decoded.table, decoded.source_ts_us, days))
            log.warning("%s", report.refused[-1])
        elif isinstance(decoded, ChangeEvent):
            events.append(decoded)
            raws.append((key, value, headers))
            done.append((coords.topic, coords.partition, coords.offset))
        elif isinstance(decoded, Skip):
            report.skipped += 1
            done.append((coords.topic, coords.partition, coords.offset))
        else:
            report.still_failing += 1
            log.info("still failing: %s[%d]@%d: %s", coords.topic, coords.partition, coords.offset, decoded.message)
    if events:
        report.landed, failed = Lander(settings, catalog).land_replayed(events, raws)
        # what decodes but still cannot land (a value that does not fit, a table that cannot land) stays
        kept = {(f.coordinates.topic, f.coordinates.partition, f.coordinates.offset) for f in failed}
        for f in failed:
            log.info("still failing: %s[%d]@%d: %s", f.coordinates.topic, f.coordinates.partition, f.coordinates.offset, f.message)
        report.still_failing += len(kept)
        done = [c for c in done if c not in kept]
    dlq.remove(catalog, done)
    return report
