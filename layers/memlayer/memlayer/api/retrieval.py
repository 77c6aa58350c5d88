"""Retrieval: search, context for the current chat, grounded chat (`/v1/search`,
`/v1/context`, `/v1/chat`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from memlayer.api.common import Body
from memlayer.api.memories import Memory
from memlayer.lazy_model import LazyModel
from memlayer.models import Kind, Moment, Timestamp
from memlayer.search.fusion import SearchMode


class SearchFiltersIn(Body):
    kind: Kind | list[Kind] | None = None
    tags: Annotated[list[str], Field(max_length=50)] = []
    provider: Annotated[str, Field(max_length=64)] | None = None
    since: Moment | None = None
    until: Moment | None = None


class SearchIn(Body):
    query: Annotated[str, Field(min_length=1, max_length=2_000)]
    limit: Annotated[int, Field(ge=1, le=100)] = 10
    mode: SearchMode = "hybrid"
    filters: SearchFiltersIn | None = None
    # The best hits' neighbouring turns of their conversation, listed right after them.
    expand: bool = False


class SearchHit(LazyModel):
    memory: Memory
    score: float
    highlights: list[str]
    neighbour_of: str | None = None  # with `expand`: listed as a turn next to this hit


class SearchOut(LazyModel):
    items: list[SearchHit]
    took_ms: float


class ContextIn(Body):
    query: Annotated[str, Field(min_length=1, max_length=2_000)]
    provider: Annotated[str, Field(max_length=64)] | None = None
    conversation_text: Annotated[str, Field(max_length=200_000)] | None = None
    max_tokens: Annotated[int, Field(ge=50, le=16_000)] = 1_000


class ContextOut(LazyModel):
    context: str
    memories: list[str]
    tokens: int


class ChatIn(Body):
    message: Annotated[str, Field(min_length=1, max_length=8_000)]
    conversation_id: Annotated[str, Field(max_length=256)] | None = None


class ChatOut(LazyModel):
    response: str
    context_used: list[str]
    timestamp: Timestamp
    provider: str
