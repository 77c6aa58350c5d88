"""Retrieval: hybrid search, a context block for the current chat, grounded chat answers.

Ranking happens behind the search port (`memlayer.storage.get_search_index()`): the warm
in-memory index on DynamoDB, SQL on Postgres; both fuse the same way (search/fusion.py)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from memlayer import queues
from memlayer.ai.chat import ContextMemory, grounded_answer
from memlayer.ai.embeddings import Embedder, get_embedder
from memlayer.api.memories import Memory
from memlayer.api.retrieval import (
    ChatIn,
    ChatOut,
    ContextIn,
    ContextOut,
    SearchFiltersIn,
    SearchHit,
    SearchIn,
    SearchOut,
)
from memlayer.errors import ProviderError
from memlayer.ids import utcnow
from memlayer.messages import StageMessage
from memlayer.models import MemoryRecord, display_title
from memlayer.observability import logger
from memlayer.search.context import ContextCandidate, build_context
from memlayer.search.conversation import (
    NEIGHBOUR_RADIUS,
    boost_period,
    expansion_candidates,
    with_neighbours,
)
from memlayer.search.fusion import Hit, SearchFilters, SearchMode
from memlayer.search.timeexpr import resolve
from memlayer.settings import get_settings
from memlayer.storage import get_search_index, get_store

SEARCH_DEPTH_FOR_CONTEXT = 20
SEARCH_DEPTH_FOR_CHAT = 8
# How many hits a query that names a time is re-ranked from. On the conversational bench
# recall@10 is the same from 20 to 50 (also on one 9k-turn user), lower at 10; 50 cost ~3 ms
# more per search at 10k memories (bench/retrieval/latency.py).
TIME_BOOST_DEPTH = 20


def _embedder() -> Embedder:
    return get_embedder(get_settings())


async def reembed(user_id: str) -> int:
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


def _filters(filters: SearchFiltersIn | None) -> SearchFilters | None:
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
    try:
        return await _embedder().embed_query(query)
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
    filters: SearchFilters | None = None,
    related_only: bool = False,
    expand: bool = False,
) -> list[tuple[MemoryRecord, Hit]]:
    """The user's best memories for `query`. With `related_only` (what goes to a chat model),
    a memory must share a word with the query or be at least the embedder's
    `relevance_floor` similar to it: ranking alone always fills the list, relevant or not.

    A query that names a time ("in March", "last week") is searched without those words, a
    little deeper, and the memories that happened in that period are boosted (soft: see
    search/conversation.py). With `expand`, the best hits bring the turns around them in
    their conversation (within the same filters), inserted after them, within `limit`."""
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
    records = {record.id: record for record, _ in results}
    hits = [hit for _, hit in results]
    if period is not None:
        hits = boost_period(hits, period, lambda mid: records[mid].occurred_at.timestamp())
    hits = hits[:limit]
    if expand and hits:
        windows = await index.turns_around(
            user_id, expansion_candidates(hits), radius=NEIGHBOUR_RADIUS, filters=filters
        )
        for turns in windows.values():
            records.update((turn.id, turn) for turn in turns)
        hits = with_neighbours(
            hits, {hit: [turn.id for turn in turns] for hit, turns in windows.items()}
        )[:limit]
    return [(records[hit.memory_id], hit) for hit in hits]


async def search(user_id: str, body: SearchIn) -> SearchOut:
    started = time.perf_counter()
    results = await ranked(
        user_id,
        body.query,
        mode=body.mode,
        limit=body.limit,
        filters=_filters(body.filters),
        expand=body.expand,
    )
    return SearchOut(
        items=[
            SearchHit(
                memory=Memory.of(record),
                score=round(hit.score, 6),
                highlights=hit.highlights,
                neighbour_of=hit.neighbour_of,
            )
            for record, hit in results
        ],
        took_ms=round((time.perf_counter() - started) * 1000, 3),
    )


async def context(user_id: str, body: ContextIn) -> ContextOut:
    # A turn of a conversation means little alone: the best hits bring the turns around them.
    results = await ranked(
        user_id,
        body.query,
        mode="hybrid",
        limit=SEARCH_DEPTH_FOR_CONTEXT,
        related_only=True,
        expand=True,
    )
    block = build_context(
        body.query,
        [
            ContextCandidate(
                id=record.id,
                title=display_title(record.analysis, record.source),
                text=record.content,
                occurred_at=record.occurred_at,
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
    results = await ranked(
        user_id, body.message, mode="hybrid", limit=SEARCH_DEPTH_FOR_CHAT, related_only=True
    )
    answer = await grounded_answer(
        body.message,
        [
            ContextMemory(
                id=record.id,
                text=record.content,
                title=display_title(record.analysis, record.source),
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
