"""The storage contract: the same behaviour from every backend, checked against DynamoDB (the
local cloud's moto table) and Postgres (one embedded server per session): storage, search,
quotas and idempotency under concurrency, capture pairing, isolation, erase and cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ulid import ULID

from memlayer.ids import new_id
from memlayer.models import JobRecord, Limits, ListQuery, MemoryRecord, Source
from memlayer.storage.base import IdempotencyClaim, SearchIndex, Store, StoredVector
from memlayer.storage.errors import (
    IdempotentReplay,
    InvalidCursor,
    LimitReached,
    VersionConflict,
)

NO_LIMITS = Limits(daily_writes=0, max_memories=0, max_bytes=0)


@dataclass
class Backend:
    name: str
    store: Store
    search: SearchIndex

    def run(self, test: Callable[[], Awaitable[None]]) -> None:
        """Runs one test body on a fresh loop, closing what the backend opened on it."""

        async def main() -> None:
            try:
                await test()
            finally:
                close = getattr(self.store, "close", None)
                if close is not None:
                    await close()

        asyncio.run(main())


@pytest.fixture(params=["dynamodb", "supabase"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "dynamodb":
        request.getfixturevalue("cloud")
        from memlayer.storage.dynamo import DynamoStore
        from memlayer.storage.dynamo_search import InMemorySearch

        dynamo = DynamoStore.from_settings()
        yield Backend("dynamodb", dynamo, InMemorySearch(dynamo))
    else:
        from memlayer.storage.postgres import PostgresSearch, PostgresStore

        postgres = PostgresStore(request.getfixturevalue("postgres_url"))
        yield Backend("supabase", postgres, PostgresSearch(postgres))


def _user() -> str:
    return f"contract-{new_id()}"


def _memory(user_id: str, content: str, **fields: Any) -> MemoryRecord:
    from memlayer.services.memories import content_hash

    now = fields.pop("created_at", None) or datetime.now(UTC)
    return MemoryRecord(
        user_id=user_id,
        id=str(ULID.from_timestamp(now.timestamp())),  # as at creation: ids sort by time
        content=content,
        kind=fields.pop("kind", "note"),
        occurred_at=now,
        created_at=now,
        updated_at=now,
        content_hash=content_hash(content),
        size_bytes=len(content.encode()),
        **fields,
    )


async def _vector(record: MemoryRecord) -> StoredVector:
    from memlayer.ai.embeddings import get_embedder
    from memlayer.settings import get_settings

    embedder = get_embedder(get_settings())
    vector = (await embedder.embed([record.content]))[0]
    return StoredVector(
        record.id, embedder.space, record.content_hash, vector.astype("<f2").tobytes()
    )


async def _query_vector(text: str) -> Any:
    from memlayer.ai.embeddings import get_embedder
    from memlayer.settings import get_settings

    return (await get_embedder(get_settings()).embed([text]))[0]


def test_memories_round_trip_list_save_and_delete(backend: Backend) -> None:
    store = backend.store
    uid = _user()

    async def test() -> None:
        base = datetime.now(UTC) - timedelta(days=3)
        records = [
            _memory(
                uid, f"note number {i}", created_at=base + timedelta(hours=i), tags=["t"] * (i % 2)
            )
            for i in range(5)
        ]
        records.append(_memory(uid, "a link", kind="share", source=Source(provider="chatgpt")))
        for record in records:
            await store.create_memory(record, job=None, default_limits=NO_LIMITS, idempotency=None)

        assert await store.get_memory(uid, records[0].id) == records[0]
        assert await store.get_memory(uid, new_id()) is None
        assert await store.get_memory(uid, "not-an-id") is None

        # newest first, in pages that join up
        page, cursor = await store.list_memories(uid, ListQuery(limit=4))
        rest, end = await store.list_memories(uid, ListQuery(limit=4, cursor=cursor))
        assert [r.id for r in page + rest] == [r.id for r in reversed(records)]
        assert end is None
        with pytest.raises(InvalidCursor):
            await store.list_memories(uid, ListQuery(cursor="bm90IGEgY3Vyc29y"))
        links, _ = await store.list_memories(uid, ListQuery(kind="share"))
        assert [r.id for r in links] == [records[-1].id]
        tagged, _ = await store.list_memories(uid, ListQuery(tag="t"))
        assert {r.id for r in tagged} == {records[1].id, records[3].id}
        chatgpt, _ = await store.list_memories(uid, ListQuery(provider="chatgpt"))
        assert [r.id for r in chatgpt] == [records[-1].id]
        window, _ = await store.list_memories(
            uid,
            ListQuery(
                since=base + timedelta(minutes=30), until=base + timedelta(hours=2, minutes=30)
            ),
        )
        assert [r.id for r in window] == [records[2].id, records[1].id]
        assert {r.id for r in await store.all_memories(uid)} == {r.id for r in records}

        # versions: a save bumps it; a stale one conflicts
        edited = records[0].model_copy(update={"content": "edited text, longer than before"})
        saved = await store.save_memory(edited, expected_version=1)
        assert saved.version == 2
        assert (await store.get_memory(uid, saved.id)) == saved
        with pytest.raises(VersionConflict):
            await store.save_memory(edited, expected_version=1)

        usage = (await store.get_profile(uid)).usage
        assert usage.memories == 6
        assert usage.bytes == sum(r.size_bytes for r in records[1:]) + saved.size_bytes
        assert usage.writes_today == 1  # the other five were created three days ago

        deleted = await store.delete_memory(uid, saved.id)
        assert deleted is not None and deleted.id == saved.id
        assert await store.get_memory(uid, saved.id) is None
        assert await store.delete_memory(uid, saved.id) is None
        assert (await store.get_profile(uid)).usage.memories == 5

    backend.run(test)


def test_list_since_until_compare_when_it_happened(backend: Backend) -> None:
    """A chat imported today that happened a week ago is in that week's window, not today's;
    filtered pages still join up, newest saved first."""
    store = backend.store
    uid = _user()

    async def test() -> None:
        now = datetime.now(UTC)
        saved = [
            _memory(uid, f"note {i}", created_at=now - timedelta(hours=3 - i)) for i in range(3)
        ]
        imported = _memory(uid, "an imported chat turn").model_copy(
            update={"occurred_at": now - timedelta(days=7)}
        )
        for record in [*saved, imported]:
            await store.create_memory(record, job=None, default_limits=NO_LIMITS, idempotency=None)

        week_ago, _ = await store.list_memories(
            uid, ListQuery(since=now - timedelta(days=8), until=now - timedelta(days=6))
        )
        assert [r.id for r in week_ago] == [imported.id]
        today, _ = await store.list_memories(uid, ListQuery(since=now - timedelta(days=1)))
        assert [r.id for r in today] == [r.id for r in reversed(saved)]
        first, cursor = await store.list_memories(
            uid, ListQuery(limit=2, since=now - timedelta(days=1))
        )
        rest, end = await store.list_memories(
            uid, ListQuery(limit=2, since=now - timedelta(days=1), cursor=cursor)
        )
        assert [r.id for r in first + rest] == [r.id for r in reversed(saved)]
        assert end is None

    backend.run(test)


def test_jobs_and_a_late_worker(backend: Backend) -> None:
    store = backend.store
    uid = _user()

    async def test() -> None:
        now = datetime.now(UTC)
        job = JobRecord(user_id=uid, id=new_id(), created_at=now, updated_at=now)
        record = _memory(uid, "with a job", job_id=job.id)
        await store.create_memory(record, job=job, default_limits=NO_LIMITS, idempotency=None)
        assert await store.get_job(uid, job.id) == job
        running = job.model_copy(update={"status": "analyzing", "progress": 0.5})
        assert await store.save_job(running) is True
        assert await store.get_job(uid, job.id) == running
        await store.delete_memory(uid, record.id)  # takes its job along
        assert await store.get_job(uid, job.id) is None
        assert await store.save_job(running) is False  # a late worker cannot bring it back
        assert await store.get_job(uid, job.id) is None

    backend.run(test)


def test_a_memory_and_its_job_are_saved_in_one_write(backend: Backend) -> None:
    """A pipeline stage saves its result and its job's progress together: both or neither,
    and never the job of a memory that is gone."""
    store = backend.store
    uid = _user()

    async def test() -> None:
        now = datetime.now(UTC)
        job = JobRecord(user_id=uid, id=new_id(), created_at=now, updated_at=now)
        record = _memory(uid, "a memory with a job", job_id=job.id)
        await store.create_memory(record, job=job, default_limits=NO_LIMITS, idempotency=None)

        embedding = job.model_copy(update={"status": "embedding", "progress": 0.7})
        analyzed = record.model_copy(update={"status": "processing"})
        saved = await store.save_memory(analyzed, expected_version=1, job=embedding)
        assert saved.version == 2
        assert await store.get_memory_and_job(uid, record.id, job.id) == (saved, embedding)
        assert await store.get_memory_and_job(uid, record.id, new_id()) == (saved, None)

        # a stale version writes neither
        completed = embedding.model_copy(update={"status": "completed", "progress": 1.0})
        with pytest.raises(VersionConflict):
            await store.save_memory(analyzed, expected_version=1, job=completed)
        assert await store.get_job(uid, job.id) == embedding
        # nor does a save over the byte limit
        bigger = saved.model_copy(update={"content": "x" * 500, "size_bytes": 500})
        with pytest.raises(LimitReached):
            await store.save_memory(bigger, expected_version=2, max_bytes=100, job=completed)
        assert await store.get_job(uid, job.id) == embedding
        assert (await store.get_memory(uid, record.id)) == saved

        # only the memory's own job rides on it
        other = JobRecord(user_id=uid, id=new_id(), created_at=now, updated_at=now)
        with pytest.raises(ValueError):
            await store.save_memory(saved, expected_version=2, job=other)
        assert await store.get_job(uid, other.id) is None

        # an edit's new job is created with the memory
        edited = saved.model_copy(update={"content": "edited", "job_id": other.id})
        await store.save_memory(edited, expected_version=2, job=other)
        assert await store.get_job(uid, other.id) == other

        # a late worker cannot bring back the job of a deleted memory
        await store.delete_memory(uid, record.id)
        assert await store.get_job(uid, other.id) is None
        done = other.model_copy(update={"status": "completed", "progress": 1.0})
        with pytest.raises(VersionConflict):
            await store.save_memory(edited, expected_version=3, job=done)
        assert await store.get_memory_and_job(uid, record.id, other.id) == (None, None)

    backend.run(test)


def test_limits_hold_under_concurrent_creates(backend: Backend) -> None:
    store = backend.store
    count_user, bytes_user, daily_user = _user(), _user(), _user()

    async def create_many(uid: str, n: int, limits: Limits) -> list[Any]:
        return await asyncio.gather(
            *(
                store.create_memory(
                    _memory(uid, f"memory {i:02d}"),
                    job=None,
                    default_limits=limits,
                    idempotency=None,
                )
                for i in range(n)
            ),
            return_exceptions=True,
        )

    async def test() -> None:
        results = await create_many(
            count_user, 12, Limits(daily_writes=0, max_memories=5, max_bytes=0)
        )
        refused = [r for r in results if isinstance(r, LimitReached)]
        assert sum(r is None for r in results) == 5
        assert len(refused) == 7 and {r.which for r in refused} == {"max_memories"}
        assert (await store.get_profile(count_user)).usage.memories == 5
        assert len(await store.all_memories(count_user)) == 5

        # each memory is 9 bytes: 40 bytes hold four
        results = await create_many(
            bytes_user, 8, Limits(daily_writes=0, max_memories=0, max_bytes=40)
        )
        assert sum(r is None for r in results) == 4
        assert {r.which for r in results if isinstance(r, LimitReached)} == {"max_bytes"}
        assert (await store.get_profile(bytes_user)).usage.bytes == 36

        results = await create_many(
            daily_user, 8, Limits(daily_writes=3, max_memories=0, max_bytes=0)
        )
        refused = [r for r in results if isinstance(r, LimitReached)]
        assert sum(r is None for r in results) == 3
        assert {r.which for r in refused} == {"daily_writes"}
        assert all(0 < r.retry_after <= 86_401 for r in refused)
        assert (await store.get_profile(daily_user)).usage.writes_today == 3

    backend.run(test)


def test_a_users_own_limits_replace_the_defaults_in_the_create(backend: Backend) -> None:
    store = backend.store
    capped, raised = _user(), _user()
    defaults = Limits(daily_writes=0, max_memories=2, max_bytes=0)

    async def created(uid: str) -> int:
        done = 0
        for i in range(4):
            try:
                await store.create_memory(
                    _memory(uid, f"memory {i:02d}"),
                    job=None,
                    default_limits=defaults,
                    idempotency=None,
                )
                done += 1
            except LimitReached as exc:
                assert exc.which == "max_memories"
        return done

    async def test() -> None:
        await store.set_limits(capped, {"max_memories": 1})
        await store.set_limits(raised, {"max_memories": 3})
        assert await created(capped) == 1
        assert await created(raised) == 3
        assert await created(_user()) == 2  # no limits of its own: the defaults

    backend.run(test)


def test_a_memory_larger_than_the_storage_limit_is_refused_whole(backend: Backend) -> None:
    store = backend.store
    by_default, by_override = _user(), _user()

    async def test() -> None:
        await store.set_limits(by_override, {"max_bytes": 5})
        for uid, defaults in (
            (by_default, Limits(daily_writes=0, max_memories=0, max_bytes=5)),
            (by_override, NO_LIMITS),
        ):
            with pytest.raises(LimitReached) as refused:
                await store.create_memory(
                    _memory(uid, "memory 00"),  # 9 bytes
                    job=None,
                    default_limits=defaults,
                    idempotency=None,
                )
            assert refused.value.which == "memory_size" and refused.value.retry_after == 3600
            assert await store.all_memories(uid) == []
            usage = (await store.get_profile(uid)).usage
            assert (usage.memories, usage.bytes, usage.writes_today) == (0, 0, 0)

    backend.run(test)


def test_a_save_writes_its_vector_in_the_same_write(backend: Backend) -> None:
    store, search = backend.store, backend.search
    uid = _user()

    async def semantic(text: str) -> list[str]:
        await search.refresh(uid)
        hits = await search.search(
            uid,
            text,
            await _query_vector(text),
            mode="semantic",
            filters=None,
            limit=10,
            semantic_weight=1.0,
            min_similarity=None,
        )
        return [record.id for record, _ in hits]

    async def test() -> None:
        kept = _memory(uid, "The staging database listens on port 6543")
        refused = _memory(uid, "Sourdough needs a long cold proof")
        for record in (kept, refused):
            await store.create_memory(record, job=None, default_limits=NO_LIMITS, idempotency=None)
        ready = {"status": "ready", "embedded_hash": kept.content_hash}
        saved = await store.save_memory(
            kept.model_copy(update=ready), expected_version=1, vector=await _vector(kept)
        )
        assert saved.version == 2
        assert await semantic(kept.content) == [kept.id]

        # a save refused by its version check writes no vector either
        with pytest.raises(VersionConflict):
            await store.save_memory(
                refused.model_copy(update=ready), expected_version=7, vector=await _vector(refused)
            )
        # and a vector of other content is not this memory's
        with pytest.raises(ValueError):
            await store.save_memory(
                refused.model_copy(update=ready), expected_version=1, vector=await _vector(kept)
            )
        assert refused.id not in await semantic(refused.content)
        assert (await store.get_memory(uid, refused.id)) == refused

    backend.run(test)


def test_an_idempotency_key_creates_once_under_concurrency(backend: Backend) -> None:
    store = backend.store
    uid = _user()

    async def test() -> None:
        claim = IdempotencyClaim("memories", "key-1", "body-hash")
        results = await asyncio.gather(
            *(
                store.create_memory(
                    _memory(uid, f"attempt {i}"),
                    job=None,
                    default_limits=NO_LIMITS,
                    idempotency=claim,
                    response={"attempt": i},
                )
                for i in range(6)
            ),
            return_exceptions=True,
        )
        replays = [r for r in results if isinstance(r, IdempotentReplay)]
        assert sum(r is None for r in results) == 1 and len(replays) == 5
        winner = next(i for i, r in enumerate(results) if r is None)
        assert {r.record.response["attempt"] for r in replays} == {winner}
        assert {r.record.body_hash for r in replays} == {"body-hash"}
        assert len(await store.all_memories(uid)) == 1
        assert (await store.get_profile(uid)).usage.writes_today == 1

    backend.run(test)


def test_capture_pairing_has_exactly_one_winner(backend: Backend) -> None:
    from memlayer.storage.captures import PendingCapture

    store = backend.store
    uid = _user()
    now = datetime.now(UTC)

    def capture(capture_id: str) -> PendingCapture:
        return PendingCapture(
            user_id=uid,
            provider="claude",
            conversation_id="conv-1",
            capture_id=capture_id,
            text=f"prompt {capture_id}",
            url=None,
            message_id=None,
            captured_at=now.isoformat(),
            expires_at=int(now.timestamp()) + 300,
        )

    async def test() -> None:
        assert await store.put_capture(capture("c1")) is None
        replaced = await store.put_capture(capture("c2"))
        assert replaced is not None and replaced.capture_id == "c1"
        assert await store.get_capture(uid, "claude", "conv-1") == capture("c2")
        leases = await asyncio.gather(
            *(store.claim_capture(uid, "claude", "conv-1", "c2", 30) for _ in range(6))
        )
        assert sorted(leases) == [False] * 5 + [True]
        assert await store.claim_capture(uid, "claude", "conv-1", "c1", 30) is False  # replaced
        takes = await asyncio.gather(
            *(store.take_capture(uid, "claude", "conv-1", "c2") for _ in range(6))
        )
        assert sorted(takes) == [False] * 5 + [True]
        assert await store.get_capture(uid, "claude", "conv-1") is None

    backend.run(test)


def test_rate_limits_admit_exactly_the_limit_and_say_when_to_retry(backend: Backend) -> None:
    store = backend.store
    uid = _user()

    async def test() -> None:
        now = datetime.now(UTC).timestamp()
        waits = await asyncio.gather(
            *(
                store.take_rate(f"user#{uid}", limit=4, period=60, owner=uid, now=now)
                for _ in range(7)
            )
        )
        assert sorted(waits)[:4] == [0.0] * 4
        assert all(0 < wait <= 60 for wait in sorted(waits)[4:])
        # No boundary burst: a minute later only the refilled share passes (4 per 60 s).
        later = [
            await store.take_rate(f"user#{uid}", limit=4, period=60, owner=uid, now=now + 15)
            for _ in range(2)
        ]
        assert later[0] == 0.0 and later[1] > 0
        address = f"ip#{new_id()}"
        first = await store.take_rate(address, limit=1, period=60, owner=None, now=now)
        second = await store.take_rate(address, limit=1, period=60, owner=None, now=now)
        assert first == 0.0 and second > 0

    backend.run(test)


def test_connections_keep_their_expiry_and_key(backend: Backend) -> None:
    store = backend.store
    uid = _user()

    async def test() -> None:
        await store.put_connection(uid, f"{uid}-c1", 2_000_000_000, key_id="key-1")
        await store.put_connection(uid, f"{uid}-c2", 2_000_000_100)
        found = sorted(await store.list_connections(uid), key=lambda c: c.connection_id)
        assert [(c.connection_id, c.expires_at, c.key_id) for c in found] == [
            (f"{uid}-c1", 2_000_000_000, "key-1"),
            (f"{uid}-c2", 2_000_000_100, None),
        ]
        assert await store.delete_connection(f"{uid}-c1") == uid
        assert [c.connection_id for c in await store.list_connections(uid)] == [f"{uid}-c2"]

    backend.run(test)


def test_api_keys_resolve_revoke_and_touch(backend: Backend) -> None:
    from memlayer.storage.accounts import ApiKeyRecord

    store = backend.store
    uid = _user()

    async def test() -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        record = ApiKeyRecord(
            user_id=uid, id=new_id(), name="ci", scopes=["read"], prefix="mlk_ab", created_at=now
        )
        key_hash = f"hash-{new_id()}"
        await store.create_api_key(record, key_hash)
        found = await store.find_api_key(key_hash)
        assert found is not None and found.user_id == uid and found.id == record.id
        assert await store.touch_api_key(uid, record.id, now) is True
        assert await store.touch_api_key(uid, record.id, now + timedelta(seconds=5)) is False
        touched = await store.get_api_key(uid, record.id)
        assert touched is not None and touched.last_used_at == now
        assert await store.revoke_api_key(uid, record.id, now) is True
        assert await store.find_api_key(key_hash) is None
        listed = await store.list_api_keys(uid)
        assert [k.revoked for k in listed] == [True]
        assert await store.touch_api_key(uid, record.id, now + timedelta(hours=1)) is False
        assert await store.revoke_api_key(uid, new_id(), now) is False
        assert await store.delete_api_key(uid, record.id) is True
        assert await store.list_api_keys(uid) == []

    backend.run(test)


def test_uploads_are_versioned(backend: Backend) -> None:
    from memlayer.storage.uploads import UploadRecord

    store = backend.store
    uid = _user()

    async def test() -> None:
        now = datetime.now(UTC)
        record = UploadRecord(
            user_id=uid,
            id=new_id(),
            filename="a.txt",
            content_type="text/plain",
            size=10,
            key=f"uploads/{uid}/a.txt",
            created_at=now - timedelta(days=2),
            updated_at=now,
            url_expires_at=now,
        )
        await store.put_upload(record)
        assert await store.get_upload(uid, record.id) == record
        older = await store.list_uploads_older_than(now - timedelta(days=1), limit=1000)
        assert record.id in {u.id for u in older}
        received = await store.update_upload(
            record.model_copy(update={"status": "received"}), expected_version=1
        )
        assert received.version == 2
        with pytest.raises(VersionConflict):
            await store.update_upload(record, expected_version=1)
        assert [u.status for u in await store.all_uploads(uid)] == ["received"]
        assert await store.delete_uploads(uid, [record.id, "bogus"]) == 1
        assert await store.get_upload(uid, record.id) is None

    backend.run(test)


def test_users_are_isolated_and_erase_removes_everything(backend: Backend) -> None:
    store, search = backend.store, backend.search
    alice, bob = _user(), _user()

    async def test() -> None:
        now = datetime.now(UTC)
        job = JobRecord(user_id=alice, id=new_id(), created_at=now, updated_at=now)
        secret = _memory(alice, "alice secret zanzibar plans", job_id=job.id)
        await store.create_memory(secret, job=job, default_limits=NO_LIMITS, idempotency=None)
        await store.put_vectors(alice, [await _vector(secret)])
        await store.put_connection(alice, f"conn-{new_id()}", int(now.timestamp()) + 600)
        mine = _memory(bob, "bob notes about zanzibar")
        await store.create_memory(mine, job=None, default_limits=NO_LIMITS, idempotency=None)

        # bob reaches none of alice's data by her ids, listing or search
        assert await store.get_memory(bob, secret.id) is None
        assert await store.get_job(bob, job.id) is None
        assert await store.delete_memory(bob, secret.id) is None
        assert [r.id for r in await store.all_memories(bob)] == [mine.id]
        await search.refresh(bob)
        hits = await search.search(
            bob,
            "zanzibar",
            await _query_vector("alice secret zanzibar plans"),
            mode="hybrid",
            filters=None,
            limit=10,
            semantic_weight=1.0,
            min_similarity=None,
        )
        assert [record.id for record, _ in hits] == [mine.id]

        counts = await store.erase_user(alice)
        assert counts["memories"] == 1 and counts["jobs"] == 1 and counts["connections"] == 1
        assert counts["vectors"] == 1
        assert await store.all_memories(alice) == []
        assert await store.get_job(alice, job.id) is None
        assert await store.list_connections(alice) == []
        assert (await store.get_profile(alice)).usage.memories == 0
        await search.refresh(alice)
        gone = await search.search(
            alice,
            "zanzibar",
            None,
            mode="keyword",
            filters=None,
            limit=10,
            semantic_weight=1.0,
            min_similarity=None,
        )
        assert gone == []
        assert [r.id for r in await store.all_memories(bob)] == [mine.id]  # bob keeps his

    backend.run(test)


def test_search_legs_filters_and_freshness(backend: Backend) -> None:
    from memlayer.models import Analysis
    from memlayer.search.fusion import SearchFilters

    store, search = backend.store, backend.search
    uid = _user()
    texts = {
        "flight": "Flight to Lisbon on Friday at nine, seat 14C",
        "pie": "Grandma's apple pie recipe with cinnamon and butter",
        "db": "The staging database listens on port 6543 behind the pooler",
        "probe": "Kubernetes liveness probe restarts the pod after three failures",
    }

    async def test() -> None:
        records = {
            key: _memory(
                uid,
                text,
                kind="share" if key == "db" else "note",
                tags=["work"] * (key in ("db", "probe")),
            )
            for key, text in texts.items()
        }
        # a title from the analysis weighs above the text
        records["pie"] = records["pie"].model_copy(
            update={
                "analysis": Analysis(
                    title="Dessert baking",
                    description="",
                    tags=["baking"],
                    category="food",
                    sentiment="neutral",
                    confidence=0.9,
                    model="offline",
                )
            }
        )
        for record in records.values():
            await store.create_memory(record, job=None, default_limits=NO_LIMITS, idempotency=None)
        await store.put_vectors(uid, [await _vector(r) for r in records.values()])

        async def ids(
            query: str, mode: Any = "hybrid", filters: Any = None, vector: bool = True
        ) -> list[str]:
            await search.refresh(uid)
            qvec = await _query_vector(query) if vector and mode != "keyword" else None
            hits = await search.search(
                uid,
                query,
                qvec,
                mode=mode,
                filters=filters,
                limit=10,
                semantic_weight=1.0,
                min_similarity=None,
            )
            by_id = {r.id: k for k, r in records.items()}
            return [by_id.get(record.id, record.id) for record, _ in hits]

        assert (await ids("Lisbon flight", mode="keyword"))[0] == "flight"
        assert (await ids("dessert", mode="keyword")) == ["pie"]  # title
        assert (await ids("baking", mode="keyword")) == ["pie"]  # analysis tag
        assert (await ids(texts["db"], mode="semantic"))[0] == "db"
        assert (await ids("staging database port"))[0] == "db"
        assert set(await ids("pod restarts database", filters=SearchFilters(tags=("work",)))) <= {
            "db",
            "probe",
        }
        assert await ids("database", filters=SearchFilters(kinds=("note",)), mode="keyword") == []
        assert await ids("apple pie", filters=SearchFilters(until=0.0)) == []

        # freshness: an edit and a delete show in the very next search
        edited = records["flight"].model_copy(update={"content": "Train to Porto on Sunday"})
        from memlayer.services.memories import content_hash

        edited = edited.model_copy(update={"content_hash": content_hash(edited.content)})
        await store.save_memory(edited, expected_version=1)
        assert await ids("Porto train", mode="keyword") == ["flight"]
        assert await ids("Lisbon", mode="keyword") == []
        # its old vector no longer matches the content, so the semantic leg leaves it out
        assert "flight" not in await ids(texts["flight"], mode="semantic")
        await store.delete_memory(uid, records["probe"].id)
        assert "probe" not in await ids("kubernetes liveness probe")

    backend.run(test)


def test_search_since_until_compare_when_it_happened(backend: Backend) -> None:
    """`since`/`until` compare `occurred_at` (an imported chat happened long before it was
    saved), on every leg, and follow an edit of it."""
    from memlayer.search.fusion import SearchFilters

    store, search = backend.store, backend.search
    uid = _user()
    saved = datetime.now(UTC)
    months = {"jan": datetime(2026, 1, 15, tzinfo=UTC), "mar": datetime(2026, 3, 10, tzinfo=UTC)}

    async def test() -> None:
        records = {
            key: _memory(uid, f"Lease notes from {key}: the lease agent called").model_copy(
                update={"occurred_at": when}
            )
            for key, when in months.items()
        }
        records["now"] = _memory(uid, "Lease notes from today: the lease agent called")
        for record in records.values():
            await store.create_memory(record, job=None, default_limits=NO_LIMITS, idempotency=None)
        await store.put_vectors(uid, [await _vector(r) for r in records.values()])
        qvec = await _query_vector("lease agent")

        async def ids(since: datetime | None, until: datetime | None, mode: Any) -> set[str]:
            await search.refresh(uid)
            hits = await search.search(
                uid,
                "lease agent",
                qvec if mode != "keyword" else None,
                mode=mode,
                filters=SearchFilters(
                    since=since.timestamp() if since else None,
                    until=until.timestamp() if until else None,
                ),
                limit=10,
                semantic_weight=1.0,
                min_similarity=None,
            )
            by_id = {r.id: k for k, r in records.items()}
            return {by_id[record.id] for record, _ in hits}

        february = datetime(2026, 2, 1, tzinfo=UTC)
        for mode in ("keyword", "semantic", "hybrid"):
            assert await ids(None, None, mode) == {"jan", "mar", "now"}, mode
            assert await ids(None, february, mode) == {"jan"}, mode
            assert await ids(february, saved - timedelta(days=1), mode) == {"mar"}, mode
            assert await ids(february, None, mode) == {"mar", "now"}, mode
            # the bounds: since is inclusive, until exclusive
            assert await ids(months["mar"], months["mar"], mode) == set(), mode
            assert await ids(months["jan"], months["mar"], mode) == {"jan"}, mode

        moved = records["mar"].model_copy(
            update={"occurred_at": datetime(2025, 12, 24, tzinfo=UTC)}
        )
        await store.save_memory(moved, expected_version=1)
        assert await ids(None, february, "keyword") == {"jan", "mar"}

    backend.run(test)


def test_recency_boost_follows_when_it_happened(backend: Backend) -> None:
    """Two equally good hits, both saved today: the one that happened yesterday ranks above the
    one said last year (whichever of the two texts the legs rank first: ranks 1 and 2 differ by
    under 2%, the recency boost by nearly 5%)."""
    from memlayer.search.fusion import SearchFilters

    store, search = backend.store, backend.search
    now = datetime.now(UTC)
    texts = ("The lease agent called about the flat", "Our lease agent wants a reply soon")

    async def test() -> None:
        qvec = await _query_vector("lease agent")
        for recent in texts:
            uid = _user()
            records = {
                text: _memory(uid, text).model_copy(
                    update={"occurred_at": now - timedelta(days=1 if text == recent else 300)}
                )
                for text in texts
            }
            for record in records.values():
                await store.create_memory(
                    record, job=None, default_limits=NO_LIMITS, idempotency=None
                )
            await store.put_vectors(uid, [await _vector(r) for r in records.values()])
            await search.refresh(uid)
            hits = await search.search(
                uid,
                "lease agent",
                qvec,
                mode="hybrid",
                filters=SearchFilters(),
                limit=10,
                semantic_weight=1.0,
                min_similarity=None,
            )
            assert [record.content for record, _ in hits] == [
                recent,
                *(text for text in texts if text != recent),
            ]

    backend.run(test)


def test_the_turns_around_a_hit_in_conversation_order(backend: Backend) -> None:
    """`turns_around` reads a hit's neighbouring turns of its conversation (same provider and
    conversation id), ordered by when they happened, within the filters, after edits."""
    from memlayer.search.fusion import SearchFilters

    store, search = backend.store, backend.search
    uid = _user()
    start = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)

    async def test() -> None:
        # saved in reverse: the id order is the opposite of the conversation order
        turns = [
            _memory(
                uid,
                f"turn {i} about the lease",
                kind="note" if i == 3 else "exchange",
                source=Source(provider="claude", conversation_id="c1"),
                created_at=datetime.now(UTC) - timedelta(seconds=i),
            ).model_copy(update={"occurred_at": start + timedelta(minutes=i)})
            for i in range(5)
        ]
        other_provider = _memory(
            uid,
            "same conversation id elsewhere",
            source=Source(provider="gpt", conversation_id="c1"),
        ).model_copy(update={"occurred_at": start + timedelta(minutes=2, seconds=30)})
        loose = _memory(uid, "a note of no conversation")
        for record in (*turns, other_provider, loose):
            await store.create_memory(record, job=None, default_limits=NO_LIMITS, idempotency=None)
        name = {r.id: f"t{i}" for i, r in enumerate(turns)} | {
            other_provider.id: "gpt",
            loose.id: "loose",
        }

        async def around(hits: list[MemoryRecord], radius: int, filters: Any = None) -> Any:
            await search.refresh(uid)
            found = await search.turns_around(
                uid, [h.id for h in hits], radius=radius, filters=filters
            )
            return {name[hit]: [name[t.id] for t in window] for hit, window in found.items()}

        t0, t1, t2, t3, t4 = turns
        assert await around([t2, t0, loose], 1) == {
            "t2": ["t1", "t2", "t3"],
            "t0": ["t0", "t1"],
        }
        assert await around([t4, other_provider], 2) == {"t4": ["t2", "t3", "t4"], "gpt": ["gpt"]}
        assert await around([t2], 0) == {"t2": ["t2"]}
        # filtered turns are skipped (the window reaches past them); a filtered hit has none
        exchanges = SearchFilters(kinds=("exchange",))
        assert await around([t2, t3], 1, exchanges) == {"t2": ["t1", "t2", "t4"]}
        # the full record comes back
        window = (await search.turns_around(uid, [t1.id], radius=1, filters=None))[t1.id]
        assert [r.model_dump() for r in window] == [t.model_dump() for t in (t0, t1, t2)]

        # an edit of when it happened reorders; a deleted turn is gone
        moved = t0.model_copy(update={"occurred_at": start + timedelta(hours=1)})
        await store.save_memory(moved, expected_version=1)
        await store.delete_memory(uid, t3.id)
        assert await around([t4], 1) == {"t4": ["t2", "t4", "t0"]}

    backend.run(test)


def test_cleanup_purges_what_expired(backend: Backend) -> None:
    from memlayer.storage.captures import PendingCapture

    store = backend.store
    uid = _user()

    async def test() -> None:
        now = datetime.now(UTC)
        past = int(now.timestamp()) - 3600
        connection = f"conn-{new_id()}"
        await store.put_connection(uid, connection, past)
        live = f"conn-{new_id()}"
        await store.put_connection(uid, live, past + 7200)
        pending = PendingCapture(
            user_id=uid,
            provider="chatgpt",
            conversation_id="c",
            capture_id="p1",
            text="prompt",
            url=None,
            message_id=None,
            captured_at=now.isoformat(),
            expires_at=past,
        )
        await store.put_capture(pending)

        found = await store.purge_expired(now)
        assert found.deleted["connections"] >= 1
        assert [c.connection_id for c in await store.list_connections(uid)] == [live]
        assert pending in found.captures
        # one sweep wins the capture; another's claim is refused until the first goes stale
        stamp = int(now.timestamp())
        assert await store.claim_expired_capture(pending, "sweep-1", stamp, 900) is True
        assert await store.claim_expired_capture(pending, "sweep-2", stamp, 900) is False
        assert await store.claim_expired_capture(pending, "sweep-2", stamp + 901, 900) is True
        # the sweep flushes captures itself: a purge leaves them for it
        assert pending in (await store.purge_expired(now)).captures

    backend.run(test)
