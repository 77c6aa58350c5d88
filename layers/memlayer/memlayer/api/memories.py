"""Memories: create, patch, read and list (`/v1/memories`)."""

from __future__ import annotations

from typing import Any

from memlayer.ai.analysis import Analysis
from memlayer.api.common import Body, Content, Metadata, Tags
from memlayer.lazy_model import LazyModel
from memlayer.models import Kind, MemoryRecord, MemoryStatus, Moment, Source, Timestamp


class MemoryCreate(Body):
    content: Content
    kind: Kind = "note"
    source: Source | None = None
    tags: Tags = []
    metadata: Metadata = {}
    occurred_at: Moment | None = None


class MemoryPatch(Body):
    content: Content | None = None
    tags: Tags | None = None
    metadata: Metadata | None = None
    occurred_at: Moment | None = None


class Memory(LazyModel):
    """A memory as the API shows it."""

    id: str
    content: str
    kind: Kind
    status: MemoryStatus
    source: Source
    tags: list[str]
    metadata: dict[str, Any]
    analysis: Analysis | None
    occurred_at: Timestamp
    created_at: Timestamp
    updated_at: Timestamp
    version: int
    job_id: str | None = None
    error: str | None = None
    secrets_found: dict[str, int] = {}

    @classmethod
    def of(cls, record: MemoryRecord) -> Memory:
        return cls.model_validate(record.model_dump(exclude={"user_id"}), from_attributes=False)


class MemoryPage(LazyModel):
    items: list[Memory]
    next_cursor: str | None
