"""The DynamoDB backend of the search port: a warm in-memory index per recent user
(`memlayer.search.UserIndex`), kept fresh from the table.

Each warm container keeps one index per recent user, tagged with the user's `data_version`
(bumped by every create, edit, delete and enrichment step). A search reads the version first
(one GetItem); when it moved, the index catches up from the user's change log (the memories
changed since the last sync, read by key and applied in place) or, when too much changed, is
rebuilt from all the user's memories. Either way the very next search reflects any change and
never misses a memory that is ready."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from memlayer.ai.embeddings import Embedder, get_embedder
from memlayer.models import MemoryRecord, SearchMode
from memlayer.search import Hit, IndexedDoc, SearchFilters, UserIndex
from memlayer.settings import get_settings
from memlayer.storage.base import CHANGE_LOG_TTL, StoredVector
from memlayer.storage.search_fields import request_reembed, search_fields

if TYPE_CHECKING:
    from memlayer.storage.dynamo import DynamoStore

CACHED_USERS = 16
# Catching up from the change log beats a full reload up to a few hundred changes.
CATCH_UP_MAX_CHANGES = 500
# How much earlier than its commit a change entry may be stamped: the entry's id is minted
# just before the transaction (retries included), on a clock that may be slightly off.
CHANGE_CLOCK_SLACK = timedelta(seconds=60)


@dataclass
class CachedIndex:
    user_id: str
    space: str  # the embedding space of its vectors
    generation: str  # PROFILE.generation: changes when the user is erased
    version: int  # PROFILE.data_version the index reflects
    synced_at: float  # epoch seconds when the last sync started reading
    index: UserIndex
    records: dict[str, MemoryRecord]
    conversations: dict[Conversation, set[str]]  # the turns of each, unordered
    # the turns of each in conversation order, sorted when first asked for after a change
    turn_order: dict[Conversation, list[str]] = field(default_factory=dict)


_cache: OrderedDict[str, CachedIndex] = OrderedDict()

Conversation = tuple[str | None, str]  # (source.provider, source.conversation_id)


def _conversation(record: MemoryRecord) -> Conversation | None:
    source = record.source
    return (source.provider, source.conversation_id) if source.conversation_id else None


def _conversations(records: Iterable[MemoryRecord]) -> dict[Conversation, set[str]]:
    found: dict[Conversation, set[str]] = {}
    for record in records:
        key = _conversation(record)
        if key is not None:
            found.setdefault(key, set()).add(record.id)
    return found


def _move_turn(cached: CachedIndex, memory_id: str, record: MemoryRecord | None) -> None:
    """Keeps `cached.conversations` in step with a memory changed (or deleted: None)."""
    old = cached.records.get(memory_id)
    old_key = _conversation(old) if old is not None else None
    new_key = _conversation(record) if record is not None else None
    for key in (old_key, new_key):  # its place in the order may have changed
        if key is not None:
            cached.turn_order.pop(key, None)
    if old_key == new_key:
        return
    if old_key is not None:
        turns = cached.conversations.get(old_key, set())
        turns.discard(memory_id)
        if not turns:
            cached.conversations.pop(old_key, None)
    if new_key is not None:
        cached.conversations.setdefault(new_key, set()).add(memory_id)


def _embedder() -> Embedder:
    return get_embedder(get_settings())


def _doc(record: MemoryRecord, vector: np.ndarray | None) -> IndexedDoc:
    fields = search_fields(record)
    return IndexedDoc(
        memory_id=record.id,
        text=record.content,
        title=fields.title,
        tags=fields.tags,
        kind=record.kind,
        provider=record.source.provider,
        status=record.status,
        created_at=record.created_at.timestamp(),
        occurred_at=record.occurred_at.timestamp(),
        dedupe_key=fields.dedupe_key,
        vector=vector,
    )


def _indexed(
    record: MemoryRecord, stored: StoredVector | None, space: str
) -> tuple[IndexedDoc, bool]:
    """The record as an `IndexedDoc`, with its vector only if it is from `space` and of the
    current content; and whether a ready memory lacks such a vector."""
    vector = None
    if stored and stored.space == space and stored.content_hash == record.content_hash:
        vector = np.frombuffer(stored.vector, dtype="<f2").astype(np.float32)
    return _doc(record, vector), vector is None and record.status == "ready"


def _apply_changes(
    cached: CachedIndex,
    changed: list[str],
    records: dict[str, MemoryRecord],
    vectors: dict[str, StoredVector],
) -> int:
    stale = 0
    for memory_id in changed:
        record = records.get(memory_id)
        _move_turn(cached, memory_id, record)
        if record is None:  # deleted
            cached.index.remove(memory_id)
            cached.records.pop(memory_id, None)
            continue
        doc, is_stale = _indexed(record, vectors.get(memory_id), cached.space)
        stale += is_stale
        cached.index.upsert(doc)
        cached.records[memory_id] = record
    return stale


class InMemorySearch:
    def __init__(self, store: DynamoStore) -> None:
        self.store = store

    async def refresh(self, user_id: str) -> None:
        await self.user_index(user_id)

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
        # What `refresh` brought up to date (no second version read; the port's contract).
        cached = _cache.get(user_id) or await self.user_index(user_id)
        hits = cached.index.search(
            query,
            vector,
            mode=mode,
            limit=limit,
            filters=filters,
            semantic_weight=semantic_weight,
            min_similarity=min_similarity,
        )
        return [(cached.records[h.memory_id], h) for h in hits if h.memory_id in cached.records]

    async def turns_around(
        self,
        user_id: str,
        memory_ids: Sequence[str],
        *,
        radius: int,
        filters: SearchFilters | None,
    ) -> dict[str, list[MemoryRecord]]:
        # The index the last search read (no second version check): the turns come from the
        # same state as the hits.
        cached = _cache.get(user_id) or await self.user_index(user_id)
        from memlayer.search.conversation import turn_window

        records = cached.records
        found: dict[str, list[MemoryRecord]] = {}
        for memory_id in memory_ids:
            record = records.get(memory_id)
            key = _conversation(record) if record is not None else None
            if key is None:
                continue
            turns = cached.turn_order.get(key)
            if turns is None:
                members = cached.conversations.get(key, ())
                turns = sorted(members, key=lambda m: (records[m].occurred_at, m))
                cached.turn_order[key] = turns
            if filters is not None and not filters.empty:
                admitted = cached.index.admitted(turns, filters)
                turns = [m for m in turns if m in admitted]
            if memory_id in turns:
                found[memory_id] = [records[m] for m in turn_window(turns, memory_id, radius)]
        return found

    async def user_index(self, user_id: str) -> CachedIndex:
        """The user's warm index, brought up to date with `PROFILE.data_version`: by applying
        the change log when only a few memories changed since the last sync, else by a full
        load."""
        generation, version = await self.store.index_version(user_id)
        cached = _cache.get(user_id)
        if cached is not None and (
            cached.space != _embedder().space  # provider, model or dimensions changed
            or cached.generation != generation  # the user was erased since
        ):
            cached = None
        if cached is not None and cached.version == version:
            _cache.move_to_end(user_id)
            return cached
        synced_at = time.time()  # before any read: what commits after it is caught next time
        if (
            cached is not None
            and version > cached.version
            and await self._catch_up(cached, synced_at)
        ):
            cached.version = version
            _cache.move_to_end(user_id)
            return cached
        return await self._load(user_id, generation, version, synced_at)

    async def _catch_up(self, cached: CachedIndex, synced_at: float) -> bool:
        """Applies the memories changed since the last sync to the warm index; False when
        that is not possible (the log has expired past the last sync, too much changed, or
        nothing did).

        A change entry is stamped (ULID time) just before its transaction commits, so reading
        the log from the last sync's start minus `CHANGE_CLOCK_SLACK` cannot miss a change
        that committed after that sync read the memories. Re-applying a change is harmless."""
        since = cached.synced_at - CHANGE_CLOCK_SLACK.total_seconds()
        if synced_at - since >= CHANGE_LOG_TTL.total_seconds():
            return False
        changed = await self.store.changed_memories(
            cached.user_id, datetime.fromtimestamp(since, UTC), limit=CATCH_UP_MAX_CHANGES
        )
        if not changed:
            # None: too much changed. Empty: the version moved yet no entry is in the window,
            # which only a clock far off could cause; reload rather than miss a change.
            return False
        records, vectors = await self.store.get_memories(cached.user_id, changed)
        stale = await asyncio.to_thread(_apply_changes, cached, changed, records, vectors)
        cached.synced_at = synced_at
        if stale:
            await request_reembed(cached.user_id, cached.space, stale)
        return True

    async def _load(
        self, user_id: str, generation: str, version: int, synced_at: float
    ) -> CachedIndex:
        records, vectors = await asyncio.gather(
            self.store.all_memories(user_id), self.store.get_vectors(user_id)
        )
        embedder = _embedder()
        docs = []
        stale = 0
        for record in records:
            doc, is_stale = _indexed(record, vectors.get(record.id), embedder.space)
            stale += is_stale
            docs.append(doc)
        index = await asyncio.to_thread(UserIndex.build, docs, embedder.dimensions)
        cached = CachedIndex(
            user_id,
            embedder.space,
            generation,
            version,
            synced_at,
            index,
            {r.id: r for r in records},
            _conversations(records),
        )
        previous = _cache.pop(user_id, None)
        if previous is not None:
            previous.index.close()
        _cache[user_id] = cached
        while len(_cache) > CACHED_USERS:
            _cache.popitem(last=False)[1].index.close()
        if stale:
            await request_reembed(user_id, embedder.space, stale)
        return cached
