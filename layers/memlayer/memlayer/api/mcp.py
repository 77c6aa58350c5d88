"""The MCP tools' inputs and outputs (`POST /mcp`; the tools reuse the REST bodies where there
is one: `SearchIn`, `ContextIn`, `ListQuery`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from memlayer.api.common import Body, Content, Tags
from memlayer.lazy_model import LazyModel
from memlayer.models import ShortText, Timestamp


class SaveMemoryIn(Body):
    content: Content
    tags: Tags = []
    occurred_at: Timestamp | None = None
    source_url: ShortText | None = None


class MemoryIdIn(Body):
    id: Annotated[str, Field(min_length=1, max_length=64)]


class SavedMemory(LazyModel):
    id: str
    status: str
    tags: list[str]
    created_at: Timestamp


class MemorySummary(LazyModel):
    id: str
    title: str | None
    snippet: str
    kind: str
    tags: list[str]
    status: str
    source_url: str | None
    created_at: Timestamp


class SearchResult(MemorySummary):
    score: float
    neighbour_of: str | None = None  # with expand: a turn listed next to this result's id


class SearchMemoriesOut(LazyModel):
    results: list[SearchResult]


class RecentMemoriesOut(LazyModel):
    memories: list[MemorySummary]
    next_cursor: str | None


class DeletedMemory(LazyModel):
    deleted: str
