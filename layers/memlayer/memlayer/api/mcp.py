"""The MCP tools' inputs and outputs (`POST /mcp`; the tools reuse the REST bodies where there
is one: `SearchIn`, `ContextIn`, `ListQuery`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from memlayer.api.common import Body, Content, Tags
from memlayer.models import ShortText, Timestamp


class SaveMemoryIn(Body):
    content: Content
    tags: Tags = []
    occurred_at: Timestamp | None = None
    source_url: ShortText | None = None


class MemoryIdIn(Body):
    id: Annotated[str, Field(min_length=1, max_length=64)]


class SavedMemory(BaseModel):
    id: str
    status: str
    tags: list[str]
    created_at: Timestamp


class MemorySummary(BaseModel):
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


class SearchMemoriesOut(BaseModel):
    results: list[SearchResult]


class RecentMemoriesOut(BaseModel):
    memories: list[MemorySummary]
    next_cursor: str | None


class DeletedMemory(BaseModel):
    deleted: str
