"""Named fault points for the fault-injection suite: `CDC_FAULT_POINT=<name>` kills this process
there with SIGKILL (after `CDC_FAULT_SKIP` earlier hits). Unset, a point costs one dict lookup."""

from __future__ import annotations

import os
import signal

AFTER_WRITE = "after-write"  # data and manifest files written, catalog not committed
AFTER_COMMIT = "after-commit"  # Iceberg commit done, Kafka group offsets not committed
# between the commits of one flush (cdc.ingest.landing): tables prepared (created, anchored, evolved),
# nothing of the batch committed / dead letters committed, no changelog yet / after each changelog
BEFORE_DEAD_LETTERS = "before-dead-letters"
AFTER_DEAD_LETTERS = "after-dead-letters"
AFTER_TABLE = "after-table"  # with CDC_FAULT_SKIP=N: after the (N+1)-th changelog commit
AFTER_RESHAPE = "bootstrap-after-reshape"  # a rebuild reshaped the lake tables; its snapshot is not published

_hits: dict[str, int] = {}


def point(name: str) -> None:
    if os.environ.get("CDC_FAULT_POINT") != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] > int(os.environ.get("CDC_FAULT_SKIP", "0")):
        os.kill(os.getpid(), signal.SIGKILL)
