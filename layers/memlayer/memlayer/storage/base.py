"""The storage ports: `Store` (records in, records out; errors from storage/errors.py) and
`SearchIndex` (a user's hybrid search, kept fresh however the backend needs). Two backends,
picked by `STORAGE_BACKEND`: DynamoDB (storage/dynamo*.py, the warm in-memory index in
storage/dynamo_search.py) and Postgres/Supabase (storage/postgres.py). tests/contract runs the
same suite against both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from memlayer.models import JobRecord, Limits, ListQuery, MemoryRecord, UsageCounts
from memlayer.search.fusion import SearchMode
from memlayer.storage.accounts import AccountsStore
from memlayer.storage.captures import CapturesStore
from memlayer.storage.cleanup import CleanupStore
from memlayer.storage.connections import ConnectionsStore
from memlayer.storage.errors import (
    IdempotencyRecord,
    IdempotentReplay,
    LimitReached,
    StorageError,
    VersionConflict,
)
from memlayer.storage.tags import TagsStore
from memlayer.storage.uploads import UploadsStore

if TYPE_CHECKING:
    import numpy as np

    from memlayer.search.fusion import Hit, SearchFilters

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
class Profile:
    user_id: str
    limits_override: dict[str, int] = field(default_factory=dict)
    usage: UsageCounts = field(default_factory=UsageCounts)


@dataclass(frozen=True)
class StoredVector:
    memory_id: str
    space: str
    content_hash: str  # the content the vector was computed from; stale vectors are ignored
    vector: bytes  # float16, little-endian


class Store(
    CapturesStore, ConnectionsStore, TagsStore, UploadsStore, AccountsStore, CleanupStore, Protocol
):
    backend: str  # "dynamodb" or "supabase", as STORAGE_BACKEND names it

    async def ping(self) -> bool: ...

    # memories
    async def create_memory(
        self,
        record: MemoryRecord,
        *,
        job: JobRecord | None,
        default_limits: Limits,
        idempotency: IdempotencyClaim | None,
        response: dict[str, Any] | None = None,
    ) -> None:
        """Writes a new memory (and its job and idempotency claim) within the user's limits:
        `default_limits` with the user's own (`set_limits`) in their place, read by the same
        call (no request of the caller's own before it). Refusals: `LimitReached` (nothing
        written; `memory_size` when the memory alone is larger than the storage limit),
        `IdempotentReplay`, `VersionConflict` (the id is taken by another memory)."""
        ...

    async def get_memory(self, user_id: str, memory_id: str) -> MemoryRecord | None: ...

    async def get_memory_and_job(
        self, user_id: str, memory_id: str, job_id: str
    ) -> tuple[MemoryRecord | None, JobRecord | None]:
        """The memory and the job (either None when absent), read together: what a pipeline
        stage reads first, in one request."""
        ...

    async def list_memories(
        self, user_id: str, query: ListQuery
    ) -> tuple[list[MemoryRecord], str | None]: ...

    async def all_memories(self, user_id: str) -> list[MemoryRecord]: ...

    async def save_memory(
        self,
        record: MemoryRecord,
        *,
        expected_version: int,
        max_bytes: int = 0,
        job: JobRecord | None = None,
        vector: StoredVector | None = None,
    ) -> MemoryRecord:
        """Writes `record` if the stored version is still `expected_version` (else
        `VersionConflict`); the stored copy gets version + 1. With `job` (the memory's own:
        `record.job_id`, see `check_own_job`), the job is written in the same write (one
        transaction): a pipeline stage's result and its progress are one call, and the job
        is written only if the memory is (so a late worker cannot bring back the job of a
        deleted memory or an erased user). With `vector` (of this memory's content, see
        `check_own_vector`), the embedding is written in the same write too: the embed stage's
        vector and its `ready` are one write, and a memory that is gone gets no vector."""
        ...

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
    async def put_vectors(self, user_id: str, vectors: list[StoredVector]) -> None:
        """Bulk-loads vectors of memories already stored (a vector of content a memory no
        longer has is ignored); the embed stage writes its own with `save_memory`."""
        ...

    async def stuck_memories(self, updated_before: datetime) -> list[MemoryRecord]: ...


def check_own_job(record: MemoryRecord, job: JobRecord | None) -> None:
    """`save_memory` writes a job only with its own memory: the memory's version check is
    what keeps the job from being written for a memory that is gone."""
    if job is not None and (job.user_id, job.id) != (record.user_id, record.job_id):
        raise ValueError(f"job {job.id} is not the job of memory {record.id}")


def check_own_vector(record: MemoryRecord, vector: StoredVector | None) -> None:
    """`save_memory` writes a vector only of the memory it saves, computed from the content
    it saves."""
    if vector is not None and (vector.memory_id, vector.content_hash) != (
        record.id,
        record.content_hash,
    ):
        raise ValueError(f"the vector is not of memory {record.id}'s content")


class SearchIndex(Protocol):
    """A user's hybrid search over their memories (search/fusion.py ranks for every backend)."""

    async def refresh(self, user_id: str) -> None:
        """Brings what `search` reads up to date with the user's latest writes (the
        in-memory index catches up from its change log; SQL is always current)."""
        ...

    async def search(
        self,
        user_id: str,
        query: str,
        vector: np.ndarray | None,
        *,
        mode: SearchMode,
        filters: SearchFilters | None,
        limit: int,
        semantic_weight: float,
        min_similarity: float | None,
    ) -> list[tuple[MemoryRecord, Hit]]:
        """Ranks what the last `refresh` of the user brought up to date."""
        ...

    async def turns_around(
        self,
        user_id: str,
        memory_ids: Sequence[str],
        *,
        radius: int,
        filters: SearchFilters | None,
    ) -> dict[str, list[MemoryRecord]]:
        """For each of `memory_ids` that is a turn of a conversation (memories sharing
        `source.provider` and `source.conversation_id`), the turns from `radius` before it to
        `radius` after it in conversation order (`occurred_at`, then id), itself included;
        turns `filters` leave out are skipped. Reads what the last `search` read."""
        ...


__all__ = [
    "CHANGE_LOG_TTL",
    "IdempotencyClaim",
    "IdempotencyRecord",
    "IdempotentReplay",
    "LimitReached",
    "Profile",
    "SearchIndex",
    "StorageError",
    "Store",
    "StoredVector",
    "VersionConflict",
    "check_own_job",
]
