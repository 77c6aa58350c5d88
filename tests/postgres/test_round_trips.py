"""What a pipeline's storage calls cost in round trips to Postgres, counted at a proxy in front
of the server (tests/postgres/test_retry.py's): a create and a stage's save are one request
each (`begin`, the call and `commit` in one message), and the reads of a worker's batch, made
in the same turn of the event loop, are one transaction per user with each caller's own
answer."""

from __future__ import annotations

import asyncio

from memlayer.ids import new_id, utcnow
from memlayer.models import JobRecord, Limits
from memlayer.storage.postgres import PostgresStore
from tests.postgres.test_retry import CommitCutter, _memory, _run

LIMITS = Limits(daily_writes=100, max_memories=100, max_bytes=1_000_000)


def test_a_create_and_a_save_are_one_request_each(postgres_url: str) -> None:
    async def test(store: PostgresStore, cutter: CommitCutter) -> None:
        uid = f"trips-{new_id()}"
        await store.ping()  # the connection is open: what follows is requests only
        record = _memory(uid)
        now = utcnow()
        job = JobRecord(
            user_id=uid, id=new_id(), memory_id=record.id, created_at=now, updated_at=now
        )
        record = record.model_copy(update={"job_id": job.id})
        before = cutter.sends
        await store.create_memory(record, job=job, default_limits=LIMITS, idempotency=None)
        assert cutter.sends - before == 1
        before = cutter.sends
        analyzed = record.model_copy(update={"status": "processing", "title": "the pooler"})
        started = job.model_copy(update={"status": "embedding"})
        saved = await store.save_memory(analyzed, expected_version=record.version, job=started)
        assert cutter.sends - before == 1
        assert await store.get_memory_and_job(uid, record.id, job.id) == (saved, started)
        usage = (await store.get_profile(uid)).usage
        assert (usage.memories, usage.bytes, usage.writes_today) == (1, record.size_bytes, 1)

    _run(postgres_url, test)


def test_a_batch_of_reads_is_one_transaction_per_user(postgres_url: str) -> None:
    async def test(store: PostgresStore, cutter: CommitCutter) -> None:
        alice, bob = f"trips-{new_id()}", f"trips-{new_id()}"
        records = [_memory(alice) for _ in range(4)] + [_memory(bob)]
        for record in records:
            await store.create_memory(record, job=None, default_limits=LIMITS, idempotency=None)
        missing = new_id()
        await asyncio.gather(store.ping(), store.ping())  # the pool's two connections are open
        before = cutter.sends
        pairs = await asyncio.gather(
            *(store.get_memory_and_job(r.user_id, r.id, new_id()) for r in records),
            store.get_memory_and_job(alice, missing, new_id()),
            store.get_memory_and_job(bob, records[0].id, new_id()),  # alice's: not bob's to see
        )
        assert list(pairs) == [(r, None) for r in records] + [(None, None), (None, None)]
        # begin, the statement (prepare, then bind and run) and commit, for each of two users
        assert cutter.sends - before == 2 * 4

    _run(postgres_url, test)
