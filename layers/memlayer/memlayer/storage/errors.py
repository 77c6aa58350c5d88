"""What storage raises, in domain terms (services map these to HTTP; see memlayer/web.py and
services/limits.py): every backend raises the same ones for the same situations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal


class StorageError(Exception):
    pass


class StorageUnavailable(StorageError):
    """The database is briefly unavailable past the backend's own retry (unreachable, restarting,
    overloaded, a statement timed out, a transaction lost a race): nothing was half-written
    (every write is one transaction), so the caller may retry. Raised by the Postgres
    backend; DynamoDB's throttling still arrives as botocore's error (`aws.is_transient`,
    which S3 and SQS share), and web.py answers both with 503 and Retry-After."""


class InvalidCursor(StorageError):
    """A list cursor that this backend did not hand out (or that was tampered with)."""


class VersionConflict(StorageError):
    """The record changed (or vanished) since it was read."""


@dataclass(frozen=True)
class IdempotencyRecord:
    body_hash: str
    response: dict[str, Any]


class IdempotentReplay(StorageError):
    """The idempotency key was used already; `record` is what the first create stored."""

    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__("idempotency key already used")
        self.record = record


# memory_size: one memory larger than the whole storage limit (no deleting makes room)
Limit = Literal["daily_writes", "max_memories", "max_bytes", "memory_size"]


class LimitReached(StorageError):
    """A write would exceed one of the user's limits; `retry_after` seconds until it may
    succeed (the next day for daily writes)."""

    def __init__(self, which: Limit, *, retry_after: int) -> None:
        super().__init__(f"{which} limit reached")
        self.which: Limit = which
        self.retry_after = retry_after


def seconds_to_midnight(now: datetime) -> int:
    """When a daily limit resets (UTC midnight), as a Retry-After."""
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((midnight - now).total_seconds()) + 1
