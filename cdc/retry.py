"""One retry policy for every call that talks to a service (catalog commits and reads, publish, Connect).

Errors are sorted at this boundary into three kinds:
- `conflict`: an optimistic-concurrency loss (another writer committed first): retry at once;
- `transient`: the service is away or the outcome is unknown (network, catalog database, object
  store, REST 5xx): retry with exponential backoff until the policy's deadline, then `ServiceError`;
- `terminal`: anything else (data that does not fit, a schema Iceberg cannot take, a bug):
  never retried; the caller dead-letters the record or halts the table.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from pyiceberg.exceptions import (
    CommitFailedException,
    CommitStateUnknownException,
    ServerError,
    ServiceUnavailableError,
    TooManyRequestsError,
    WaitingForLockException,
)
from sqlalchemy.exc import SQLAlchemyError

from cdc.errors import ServiceError, TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")
ErrorKind = Literal["conflict", "transient", "terminal"]

# the catalog's database (SQLAlchemy), sockets and files (OSError: also pyarrow's and requests'
# I/O errors), and the REST catalog's "try again" answers
_TRANSIENT: tuple[type[BaseException], ...] = (
    TransientError,
    OSError,
    SQLAlchemyError,
    CommitStateUnknownException,
    ServiceUnavailableError,
    ServerError,
    TooManyRequestsError,
    WaitingForLockException,
)


def error_kind(exc: BaseException) -> ErrorKind:
    """Pure: how an error raised by a service call is handled."""
    if isinstance(exc, CommitFailedException):
        return "conflict"
    if isinstance(exc, _TRANSIENT):
        return "transient"
    return "terminal"


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff from `first_delay` doubling to `max_delay`, with jitter, until `deadline_seconds`."""

    deadline_seconds: float = 300.0
    first_delay: float = 0.2
    max_delay: float = 10.0
    max_conflicts: int = 10

    def delay(self, attempt: int) -> float:
        """Pure but for the jitter: the pause after the `attempt`-th transient failure (1-based)."""
        base: float = min(self.first_delay * 2 ** (attempt - 1), self.max_delay)
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


def retrying(what: str, policy: RetryPolicy, attempt: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `attempt` until it returns; conflicts and transient errors retry, terminal ones raise.

    Each call of `attempt` must start from fresh state (reload the table), so a retry after an
    unknown outcome sees what the earlier attempt committed.
    """
    deadline = time.monotonic() + policy.deadline_seconds
    conflicts = failures = 0
    while True:
        try:
            return attempt()
        except Exception as exc:
            kind = error_kind(exc)
            if kind == "terminal":
                raise
            if kind == "conflict":
                conflicts += 1
                log.warning("%s: commit conflict %d/%d, retrying: %s", what, conflicts, policy.max_conflicts, exc)
                if conflicts >= policy.max_conflicts:
                    raise ServiceError(f"{what}: gave up after {conflicts} commit conflicts") from exc
                continue
            failures += 1
            if time.monotonic() >= deadline:
                raise ServiceError(f"{what}: the service did not answer within {policy.deadline_seconds:.0f} s: {exc}") from exc
            pause = policy.delay(failures)
            log.warning("%s: %s (attempt %d), backing off %.1f s: %s", what, type(exc).__name__, failures, pause, exc)
            sleep(pause)
