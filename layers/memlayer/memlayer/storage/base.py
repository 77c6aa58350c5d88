"""The storage interface. DynamoDB implements it (storage/dynamo.py); the integration tests
exercise it through the functions. A second implementation (Supabase Postgres) should come with
a contract suite that runs against both."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from memlayer.models import JobRecord, Limits, ListQuery, MemoryRecord, UsageCounts
from memlayer.storage.accounts import AccountsStore
from memlayer.storage.pipeline import PipelineStore
from memlayer.storage.uploads import UploadsStore

# Every memory change leaves a change-log entry this long: how far back a warm search index
# can catch up instead of reloading all of a user's memories.
CHANGE_LOG_TTL = timedelta(days=1)


@dataclass(frozen=True)
class IdempotencyClaim:
    """Claims `key` for one create; a second create with the same key finds the first."""

    scope: str
    key: str
    body_hash: str


@dataclass(frozen=True)
class IdempotencyRecord:
    body_hash: str
    status_code: int
    response: dict[str, Any]


class IdempotentReplay(Exception):
    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__("idempotency key already used")
        self.record = record


class VersionConflict(Exception):
    """The record changed (or vanished) since it was read."""


@dataclass(frozen=True)
class Profile:
    user_id: str
    limits_override: dict[str, int] = field(default_factory=dict)
    usage: UsageCounts = field(default_factory=UsageCounts)
    data_version: int = 0  # bumped by every memory write
    # Set when the profile is first written: erasing a user deletes it, so data_version
    # restarts from 0 under a new generation and a warm cache cannot mistake the new data
    # for the erased one.
    generation: str = ""


@dataclass(frozen=True)
class StoredVector:
    memory_id: str
    space: str
    content_hash: str  # the content the vector was computed from; stale vectors are ignored
    vector: bytes  # float16, little-endian


class Store(PipelineStore, UploadsStore, AccountsStore, Protocol):
    async def ping(self) -> bool: ...

    # memories
    async def create_memory(
        self,
        record: MemoryRecord,
        *,
        job: JobRecord | None,
        limits: Limits,
        idempotency: IdempotencyClaim | None,
        response: dict[str, Any] | None = None,
    ) -> None: ...

    async def get_memory(self, user_id: str, memory_id: str) -> MemoryRecord | None: ...

    async def list_memories(
        self, user_id: str, query: ListQuery
    ) -> tuple[list[MemoryRecord], str | None]: ...

    async def all_memories(self, user_id: str) -> list[MemoryRecord]: ...

    async def get_memories(
        self, user_id: str, memory_ids: list[str]
    ) -> tuple[dict[str, MemoryRecord], dict[str, StoredVector]]: ...

    async def changed_memories(
        self, user_id: str, since: datetime, *, limit: int
    ) -> list[str] | None: ...

    async def save_memory(
        self, record: MemoryRecord, *, expected_version: int, max_bytes: int = 0
    ) -> MemoryRecord: ...

    async def delete_memory(self, user_id: str, memory_id: str) -> MemoryRecord | None: ...

    # usage
    async def get_profile(self, user_id: str) -> Profile: ...

    async def set_limits(self, user_id: str, limits: dict[str, int]) -> Profile: ...

    async def take_rate(
        self, key: str, *, limit: int, period: float, owner: str | None, now: float
    ) -> float:
        """Counts one request against `limit` per `period` seconds (no boundary bursts);
        0 when it may pass, else the seconds until one could."""
        ...

    # jobs
    async def put_job(self, job: JobRecord) -> None: ...

    async def save_job(self, job: JobRecord) -> bool: ...

    async def get_job(self, user_id: str, job_id: str) -> JobRecord | None: ...

    # vectors
    async def put_vectors(self, user_id: str, vectors: list[StoredVector]) -> None: ...

    async def get_vectors(self, user_id: str) -> dict[str, StoredVector]: ...

    async def delete_vector(self, user_id: str, memory_id: str) -> None: ...

    async def stuck_memories(self, updated_before: datetime) -> list[MemoryRecord]: ...
