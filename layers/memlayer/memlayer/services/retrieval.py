"""Retrieval: hybrid search, a context block for the current chat, grounded chat answers.

Ranking happens behind the search port (`memlayer.storage.get_search_index()`): the warm
in-memory index on DynamoDB, SQL on Postgres; both fuse the same way (search/fusion.py)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from memlayer.ids import utcnow
from memlayer.messages import StageMessage
from memlayer.models import Body, Kind, Memory, MemoryRecord, Moment, SearchMode, Timestamp
from memlayer.observability import logger
from memlayer.search.conversation import boost_period
from memlayer.search.timeexpr import resolve
from memlayer.settings import get_settings
from memlayer.storage import get_search_index, get_store

if TYPE_CHECKING:
    import numpy as np
SEARCH_DEPTH_FOR_CONTEXT = 20
SEARCH_DEPTH_FOR_CHAT = 8
# How many hits a query that names a time is re-ranked from.
TIME_BOOST_DEPTH = 50


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


class SearchHit(BaseModel):
    memory: Memory
    score: float
    highlights: list[str]


class SearchOut(BaseModel):
    items: list[SearchHit]
    took_ms: float


class ContextIn(Body):
    query: Annotated[str, Field(min_length=1, max_length=2_000)]
    provider: Annotated[str, Field(max_length=64)] | None = None
    conversation_text: Annotated[str, Field(max_length=200_000)] | None = None
    max_tokens: Annotated[int, Field(ge=50, le=16_000)] = 1_000


class ContextOut(BaseModel):
    context: str
    memories: list[str]
    tokens: int


class ChatIn(Body):
    message: Annotated[str, Field(min_length=1, max_length=8_000)]
    conversation_id: Annotated[str, Field(max_length=256)] | None = None


class ChatOut(BaseModel):
    response: str
    context_used: list[str]
    timestamp: Timestamp
    provider: str


def _embedder() -> Any:
    from memlayer.ai.embeddings import get_embedder

    return get_embedder(get_settings())


async def reembed(user_id: str) -> int:
    from memlayer import queues

    space = _embedder().space
    records = await get_store().all_memories(user_id)
    messages = [
        StageMessage(memory_id=r.id, user_id=user_id, job_id=r.job_id)
        for r in records
        if r.job_id and r.embedding_space != space and r.status in ("ready", "processing")
    ]
    failed = await queues.send_batch("embed", messages)
    if failed:
        raise RuntimeError(f"{len(failed)} re-embed messages were not accepted")
    return len(messages)


def _filters(filters: SearchFiltersIn | None) -> Any:
    from memlayer.search import SearchFilters

    if filters is None:
        return None
    kinds = [filters.kind] if isinstance(filters.kind, str) else filters.kind
    return SearchFilters(
        kinds=tuple(kinds) if kinds else None,
        tags=tuple(filters.tags) if filters.tags else None,
        provider=filters.provider,
        since=filters.since.timestamp() if filters.since else None,
        until=filters.until.timestamp() if filters.until else None,
    )


async def _query_vector(query: str, mode: SearchMode) -> np.ndarray | None:
    if mode == "keyword":
        return None
    from memlayer.errors import ProviderError

    try:
        return (await _embedder().embed([query]))[0]
    except ProviderError as exc:
        # Keyword ranking still answers when the embeddings provider is down.
        logger.warning("query embedding failed; keyword only", reason=exc.reason)
        return None


async def ranked(
    user_id: str,
    query: str,
    *,
    mode: SearchMode,
    limit: int,
    filters: Any = None,
    related_only: bool = False,
) -> list[tuple[MemoryRecord, Any]]:
    """The user's best memories for `query`. With `related_only` (what goes to a chat model),
    a memory must share a word with the query or be at least the embedder's
    `relevance_floor` similar to it: ranking alone always fills the list, relevant or not.

    A query that names a time ("in March", "last week") is searched without those words, a
    little deeper, and the memories that happened in that period are boosted (soft: see
    search/conversation.py)."""
    period = resolve(query)
    text = (period.strip_from(query) or query) if period else query
    index = get_search_index()
    _, vector = await asyncio.gather(index.refresh(user_id), _query_vector(text, mode))
    embedder = _embedder()
    results = await index.search(
        user_id,
        text,
        vector,
        mode=mode,
        limit=max(limit, TIME_BOOST_DEPTH) if period else limit,
        filters=filters,
        semantic_weight=embedder.fusion_weight,
        min_similarity=embedder.relevance_floor if related_only else None,
    )
    if period is None:
        return results
    records = {record.id: record for record, _ in results}
    boosted = boost_period(
        [hit for _, hit in results], period, lambda mid: records[mid].occurred_at.timestamp()
    )
    return [(records[hit.memory_id], hit) for hit in boosted[:limit]]


async def search(user_id: str, body: SearchIn) -> SearchOut:
    started = time.perf_counter()
    results = await ranked(
        user_id, body.query, mode=body.mode, limit=body.limit, filters=_filters(body.filters)
    )
    return SearchOut(
        items=[
            SearchHit(
                memory=Memory.of(record), score=round(hit.score, 6), highlights=hit.highlights
            )
            for record, hit in results
        ],
        took_ms=round((time.perf_counter() - started) * 1000, 3),
    )


async def context(user_id: str, body: ContextIn) -> ContextOut:
    from memlayer.search.context import ContextCandidate, build_context

    results = await ranked(
        user_id, body.query, mode="hybrid", limit=SEARCH_DEPTH_FOR_CONTEXT, related_only=True
    )
    block = build_context(
        body.query,
        [
            ContextCandidate(
                id=record.id,
                title=record.analysis.title if record.analysis else record.source.title,
                text=record.content,
                created_at=record.created_at,
                source_url=record.source.canonical_url or record.source.url,
                provider=record.source.provider,
            )
            for record, _ in results
        ],
        provider=body.provider,
        conversation_text=body.conversation_text,
        max_tokens=body.max_tokens,
    )
    return ContextOut(context=block.context, memories=block.memory_ids, tokens=block.tokens)


async def chat(user_id: str, body: ChatIn) -> ChatOut:
    from memlayer.ai.chat import ContextMemory, grounded_answer

    results = await ranked(
        user_id, body.message, mode="hybrid", limit=SEARCH_DEPTH_FOR_CHAT, related_only=True
    )
    answer = await grounded_answer(
        body.message,
        [
            ContextMemory(
                id=record.id,
                text=record.content,
                title=record.analysis.title if record.analysis else record.source.title,
            )
            for record, _ in results
        ],
        settings=get_settings(),
    )
    return ChatOut(
        response=answer.response,
        context_used=answer.memory_ids_given,
        timestamp=utcnow(),
        provider=answer.provider,
    )
