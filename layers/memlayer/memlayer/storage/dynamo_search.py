"""The DynamoDB backend of the search port: a warm in-memory index per recent user
(`memlayer.search.index.UserIndex`), kept fresh from the table.

Each warm container keeps one index per recent user, tagged with the user's `data_version`
(bumped by every create, edit, delete and enrichment step). A search reads the version first
(one GetItem); when it moved, the index catches up from the user's change log (the memories
changed since the last sync, read by key and applied in place) or, when too much changed, is
rebuilt from all the user's memories. Either way the very next search reflects any change and
never misses a memory that is ready.

A container that has no index of the user yet starts from the user's persisted snapshot
(storage/index_snapshot.py) when there is a usable one, and catches it up from the change log
like any warm index; a full load from the table writes a new snapshot, and so does a warm index
that has caught up on many changes since the snapshot it knows of."""

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
from memlayer.models import MemoryRecord
from memlayer.search.conversation import turn_window
from memlayer.search.fusion import Hit, SearchFilters, SearchMode
from memlayer.search.index import IndexedDoc, UserIndex
from memlayer.settings import get_settings
from memlayer.storage import index_snapshot
from memlayer.storage.base import CHANGE_LOG_TTL, StoredVector
from memlayer.storage.index_snapshot import Snapshot
from memlayer.storage.search_fields import request_reembed, search_fields

if TYPE_CHECKING:
    from memlayer.storage.dynamo import DynamoStore

CACHED_USERS = 16
# Catching up from the change log beats a full reload up to a few hundred changes.
CATCH_UP_MAX_CHANGES = 500
# How much earlier than its commit a change entry may be stamped: the entry's id is minted
# just before the transaction (retries included), on a clock that may be slightly off.
CHANGE_CLOCK_SLACK = timedelta(seconds=60)
# A warm index writes a new snapshot once it has caught up on this many changes since the
# snapshot it knows of (below CATCH_UP_MAX_CHANGES, so a new container can still catch up),
# or on any change once that snapshot is this old (well inside the change log's TTL).
SNAPSHOT_AFTER_CHANGES = 200
SNAPSHOT_AFTER_AGE = timedelta(hours=6)
# Below this many memories a load from the table is a page or two: no snapshot is kept.
SNAPSHOT_MIN_MEMORIES = 500


@dataclass
class CachedIndex:
    user_id: str
    space: str  # the embedding space of its vectors
    generation: str  # PROFILE.generation: changes when the user is erased
    version: int  # PROFILE.data_version the index reflects
    synced_at: float  # epoch seconds when the last sync started reading
    index: UserIndex
    records: dict[str, MemoryRecord]
    vectors: dict[str, np.ndarray]  # the float16 vectors indexed (what a snapshot stores)
    conversations: dict[Conversation, set[str]]  # the turns of each, unordered
    # the turns of each in conversation order, sorted when first asked for after a change
    turn_order: dict[Conversation, list[str]] = field(default_factory=dict)
    # data_version and synced_at of the newest snapshot this index was loaded from or wrote
    # (None: none)
    snapshot_version: int | None = None
    snapshot_synced_at: float | None = None

    def snapshot(self, dimensions: int) -> Snapshot:
        return Snapshot(
            user_id=self.user_id,
            generation=self.generation,
            version=self.version,
            synced_at=self.synced_at,
            space=self.space,
            dimensions=dimensions,
            records=list(self.records.values()),
            vectors=dict(self.vectors),
        )


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
    """`vector`: float32, or None while the memory has none of the current space."""
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


def _usable(record: MemoryRecord, stored: StoredVector | None, space: str) -> np.ndarray | None:
    """The stored vector (float16) if it is from `space` and of the record's current content."""
    if stored and stored.space == space and stored.content_hash == record.content_hash:
        return np.frombuffer(stored.vector, dtype="<f2")
    return None


def _stale(records: Iterable[MemoryRecord], vectors: dict[str, np.ndarray]) -> int:
    """How many ready memories lack a vector of the current space."""
    return sum(1 for r in records if r.status == "ready" and r.id not in vectors)


def _snapshot_lags(cached: CachedIndex, now: float) -> bool:
    """Whether the index is far enough ahead of the newest snapshot it knows of to write a
    new one (data_version counts the user's writes)."""
    if cached.snapshot_version is None or cached.snapshot_synced_at is None:
        return True
    behind = cached.version - cached.snapshot_version
    return behind >= SNAPSHOT_AFTER_CHANGES or (
        behind > 0 and now - cached.snapshot_synced_at >= SNAPSHOT_AFTER_AGE.total_seconds()
    )


def _build(
    records: list[MemoryRecord], vectors: dict[str, np.ndarray], dimensions: int
) -> UserIndex:
    ids = [r.id for r in records if r.id in vectors]
    # one float16 -> float32 conversion for all, each document gets a row of it
    matrix = (
        np.stack([vectors[i] for i in ids]).astype(np.float32)
        if ids
        else np.zeros((0, dimensions), np.float32)
    )
    rows = dict(zip(ids, matrix, strict=True))
    return UserIndex.build([_doc(r, rows.get(r.id)) for r in records], dimensions)


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
            cached.vectors.pop(memory_id, None)
            continue
        vector = _usable(record, vectors.get(memory_id), cached.space)
        if vector is None:
            cached.vectors.pop(memory_id, None)
            stale += record.status == "ready"
        else:
            cached.vectors[memory_id] = vector
        cached.index.upsert(_doc(record, None if vector is None else vector.astype(np.float32)))
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
        the change log when only a few memories changed since the last sync (a new container
        starts from the user's snapshot, when it has a usable one), else by a full load."""
        generation, version, memories = await self.store.index_version(user_id)
        cached = _cache.get(user_id)
        if cached is not None and (
            cached.space != _embedder().space  # provider, model or dimensions changed
            or cached.generation != generation  # the user was erased since
        ):
            cached = None
        if cached is None:
            if memories >= SNAPSHOT_MIN_MEMORIES:
                cached = await self._from_snapshot(user_id, generation, version)
            if cached is not None and cached.version == version:
                return self._keep(cached)
        elif cached.version == version:
            _cache.move_to_end(user_id)
            return cached
        synced_at = time.time()  # before any read: what commits after it is caught next time
        if (
            cached is not None
            and version > cached.version
            and await self._catch_up(cached, synced_at)
        ):
            cached.version = version
            self._keep(cached)
            if _snapshot_lags(cached, synced_at):
                await self._persist(cached)
            return cached
        cached = await self._load(user_id, generation, version, synced_at)
        await self._persist(cached)
        return cached

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

    async def _from_snapshot(
        self, user_id: str, generation: str, version: int
    ) -> CachedIndex | None:
        """An index built from the user's snapshot, as of the snapshot's sync (the caller
        catches it up); None when there is no snapshot of this generation and space."""
        snapshot = await index_snapshot.read(user_id)
        embedder = _embedder()
        if (
            snapshot is None
            or snapshot.generation != generation
            or snapshot.space != embedder.space
            or snapshot.dimensions != embedder.dimensions
            or snapshot.version > version
        ):
            return None
        cached = await self._index(
            user_id,
            generation,
            snapshot.version,
            snapshot.synced_at,
            snapshot.records,
            snapshot.vectors,
        )
        cached.snapshot_version, cached.snapshot_synced_at = snapshot.version, snapshot.synced_at
        return cached

    async def _load(
        self, user_id: str, generation: str, version: int, synced_at: float
    ) -> CachedIndex:
        records, stored = await asyncio.gather(
            self.store.all_memories(user_id), self.store.get_vectors(user_id)
        )
        space = _embedder().space
        vectors = {
            r.id: vector
            for r in records
            if (vector := _usable(r, stored.get(r.id), space)) is not None
        }
        return self._keep(
            await self._index(user_id, generation, version, synced_at, records, vectors)
        )

    async def _index(
        self,
        user_id: str,
        generation: str,
        version: int,
        synced_at: float,
        records: list[MemoryRecord],
        vectors: dict[str, np.ndarray],
    ) -> CachedIndex:
        embedder = _embedder()
        index = await asyncio.to_thread(_build, records, vectors, embedder.dimensions)
        cached = CachedIndex(
            user_id,
            embedder.space,
            generation,
            version,
            synced_at,
            index,
            {r.id: r for r in records},
            vectors,
            _conversations(records),
        )
        stale = _stale(records, vectors)
        if stale:
            await request_reembed(user_id, embedder.space, stale)
        return cached

    @staticmethod
    def _keep(cached: CachedIndex) -> CachedIndex:
        """Makes `cached` the user's warm index (closing one it replaces) and the most
        recently used."""
        previous = _cache.pop(cached.user_id, None)
        if previous is not None and previous is not cached:
            previous.index.close()
        _cache[cached.user_id] = cached
        while len(_cache) > CACHED_USERS:
            _cache.popitem(last=False)[1].index.close()
        return cached

    async def _persist(self, cached: CachedIndex) -> None:
        """Writes the index's state as the user's snapshot. An erase that ran meanwhile
        (the generation is gone) deletes what it wrote: no copy of erased data stays. A write
        that failed (logged) is tried again only once the snapshot lags again."""
        if len(cached.records) < SNAPSHOT_MIN_MEMORIES:
            return
        cached.snapshot_version, cached.snapshot_synced_at = cached.version, cached.synced_at
        if not await index_snapshot.write(cached.snapshot(_embedder().dimensions)):
            return
        if (await self.store.index_version(cached.user_id)).generation != cached.generation:
            await index_snapshot.discard(cached.user_id)
