"""Retrieval: hybrid search, a context block for the current chat, grounded chat answers.

Each warm container keeps one `UserIndex` per recent user, tagged with the user's
`data_version` (bumped by every create, edit, delete and enrichment step). A search reads the
version first (one GetItem); when it moved, the index catches up from the user's change log
(the memories changed since the last sync, read by key and applied in place) or, when too
much changed, is rebuilt from all the user's memories. Either way the very next search
reflects any change and never misses a memory that is ready."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from memlayer.ids import utcnow
from memlayer.models import Body, Kind, Memory, MemoryRecord, Moment, SearchMode, Timestamp
from memlayer.observability import logger
from memlayer.settings import get_settings
from memlayer.storage import get_store
from memlayer.storage.base import CHANGE_LOG_TTL, StoredVector

if TYPE_CHECKING:
    import numpy as np

CACHED_USERS = 16
# Catching up from the change log beats a full reload up to a few hundred changes.
CATCH_UP_MAX_CHANGES = 500
# How much earlier than its commit a change entry may be stamped: the entry's id is minted
# just before the transaction (retries included), on a clock that may be slightly off.
CHANGE_CLOCK_SLACK = timedelta(seconds=60)
SEARCH_DEPTH_FOR_CONTEXT = 20
SEARCH_DEPTH_FOR_CHAT = 8


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


@dataclass
class CachedIndex:
    user_id: str
    space: str  # the embedding space of its vectors
    generation: str  # PROFILE.generation: changes when the user is erased
    version: int  # PROFILE.data_version the index reflects
    synced_at: float  # epoch seconds when the last sync started reading
    index: Any  # memlayer.search.UserIndex
    records: dict[str, MemoryRecord]


_cache: OrderedDict[str, CachedIndex] = OrderedDict()
_reembed_requested: set[tuple[str, str]] = set()


def _doc(record: MemoryRecord, vector: np.ndarray | None) -> Any:
    from memlayer.search import IndexedDoc
    from memlayer.services.memories import content_hash

    analysis = record.analysis
    url = record.source.canonical_url or record.source.url
    return IndexedDoc(
        memory_id=record.id,
        text=record.content,
        title=(analysis.title if analysis else None) or record.source.title,
        tags=tuple(dict.fromkeys([*record.tags, *(analysis.tags if analysis else [])])),
        kind=record.kind,
        provider=record.source.provider,
        status=record.status,
        created_at=record.created_at.timestamp(),
        dedupe_key=_dedupe_url(url) if url else content_hash(record.content),
        vector=vector,
    )


def _dedupe_url(url: str) -> str:
    from memlayer.pipeline.extract import normalize_url

    return normalize_url(url)


async def user_index(user_id: str) -> CachedIndex:
    """The user's warm index, brought up to date with `PROFILE.data_version`: by applying the
    change log when only a few memories changed since the last sync, else by a full load."""
    store = get_store()
    profile = await store.get_profile(user_id)
    version = profile.data_version
    cached = _cache.get(user_id)
    if cached is not None and (
        cached.space != _embedder().space  # provider, model or dimensions changed
        or cached.generation != profile.generation  # the user was erased since
    ):
        cached = None
    if cached is not None and cached.version == version:
        _cache.move_to_end(user_id)
        return cached
    synced_at = time.time()  # before any read: what commits after it is caught next time
    if cached is not None and version > cached.version and await _catch_up(cached, synced_at):
        cached.version = version
        _cache.move_to_end(user_id)
        return cached
    return await _load(user_id, profile.generation, version, synced_at)


async def _catch_up(cached: CachedIndex, synced_at: float) -> bool:
    """Applies the memories changed since the last sync to the warm index; False when that is
    not possible (the log has expired past the last sync, too much changed, or nothing did).

    A change entry is stamped (ULID time) just before its transaction commits, so reading the
    log from the last sync's start minus `CHANGE_CLOCK_SLACK` cannot miss a change that
    committed after that sync read the memories. Re-applying a change is harmless."""
    since = cached.synced_at - CHANGE_CLOCK_SLACK.total_seconds()
    if synced_at - since >= CHANGE_LOG_TTL.total_seconds():
        return False
    store = get_store()
    changed = await store.changed_memories(
        cached.user_id, datetime.fromtimestamp(since, UTC), limit=CATCH_UP_MAX_CHANGES
    )
    if not changed:
        # None: too much changed. Empty: the version moved yet no entry is in the window,
        # which only a clock far off could cause; reload rather than miss a change.
        return False
    records, vectors = await store.get_memories(cached.user_id, changed)
    stale = await asyncio.to_thread(_apply_changes, cached, changed, records, vectors)
    cached.synced_at = synced_at
    if stale:
        await _request_reembed(cached.user_id, cached.space, stale)
    return True


def _apply_changes(
    cached: CachedIndex,
    changed: list[str],
    records: dict[str, MemoryRecord],
    vectors: dict[str, StoredVector],
) -> int:
    stale = 0
    for memory_id in changed:
        record = records.get(memory_id)
        if record is None:  # deleted
            cached.index.remove(memory_id)
            cached.records.pop(memory_id, None)
            continue
        doc, is_stale = _indexed(record, vectors.get(memory_id), cached.space)
        stale += is_stale
        cached.index.upsert(doc)
        cached.records[memory_id] = record
    return stale


async def _load(user_id: str, generation: str, version: int, synced_at: float) -> CachedIndex:
    from memlayer.search import UserIndex

    store = get_store()
    records, vectors = await asyncio.gather(store.all_memories(user_id), store.get_vectors(user_id))
    embedder = _embedder()
    docs = []
    stale = 0
    for record in records:
        doc, is_stale = _indexed(record, vectors.get(record.id), embedder.space)
        stale += is_stale
        docs.append(doc)
    index = await asyncio.to_thread(UserIndex.build, docs, embedder.dimensions)
    cached = CachedIndex(
        user_id, embedder.space, generation, version, synced_at, index, {r.id: r for r in records}
    )
    previous = _cache.pop(user_id, None)
    if previous is not None:
        previous.index.close()
    _cache[user_id] = cached
    while len(_cache) > CACHED_USERS:
        _cache.popitem(last=False)[1].index.close()
    if stale:
        await _request_reembed(user_id, embedder.space, stale)
    return cached


def _indexed(record: MemoryRecord, stored: StoredVector | None, space: str) -> tuple[Any, bool]:
    """The record as an `IndexedDoc`, with its vector only if it is from `space` and of the
    current content; and whether a ready memory lacks such a vector."""
    vector = None
    if stored and stored.space == space and stored.content_hash == record.content_hash:
        import numpy as np  # imported on the first search, not at cold start

        vector = np.frombuffer(stored.vector, dtype="<f2").astype(np.float32)
    return _doc(record, vector), vector is None and record.status == "ready"


def _embedder() -> Any:
    from memlayer.ai.embeddings import get_embedder

    return get_embedder(get_settings())


async def _request_reembed(user_id: str, space: str, stale: int) -> None:
    """Ready memories whose vectors come from another embedding space (provider, model or
    dimensions changed) are re-embedded through the embed queue, never mixed."""
    if (user_id, space) in _reembed_requested:
        return
    from memlayer import queues

    logger.info("re-embedding memories from an older vector space", stale=stale)
    await queues.send("tasks", {"type": "reembed", "user_id": user_id})
    _reembed_requested.add((user_id, space))


async def reembed(user_id: str) -> int:
    from memlayer import queues

    space = _embedder().space
    records = await get_store().all_memories(user_id)
    messages = [
        {"memory_id": r.id, "user_id": user_id, "job_id": r.job_id}
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
    `relevance_floor` similar to it: ranking alone always fills the list, relevant or not."""
    cached, vector = await asyncio.gather(user_index(user_id), _query_vector(query, mode))
    embedder = _embedder()
    hits = cached.index.search(
        query,
        vector,
        mode=mode,
        limit=limit,
        filters=filters,
        semantic_weight=embedder.fusion_weight,
        min_similarity=embedder.relevance_floor if related_only else None,
    )
    return [(cached.records[hit.memory_id], hit) for hit in hits if hit.memory_id in cached.records]


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
