"""A database that is briefly unavailable surfaces as `StorageUnavailable` (which HTTP answers
with 503 and Retry-After, and a worker's record retries), never as the driver's own error: a
server nobody listens on, a statement past the store's timeout (a lock held elsewhere), a
transaction that lost a serialization race. An error that is a bug stays what it is."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from memlayer.ids import new_id
from memlayer.storage.errors import StorageUnavailable
from memlayer.storage.postgres import PostgresStore
from tests.postgres.test_retry import NO_LIMITS, _memory


def test_an_unreachable_database_is_unavailable() -> None:
    async def main() -> None:
        store = PostgresStore("postgresql://postgres@127.0.0.1:9/postgres", timeout=1.0)
        try:
            with pytest.raises(StorageUnavailable):
                await store.get_memory("someone", new_id())
        finally:
            await store.close()

    asyncio.run(main())


def test_a_statement_past_the_timeout_is_unavailable(postgres_url: str) -> None:
    async def main() -> None:
        store = PostgresStore(postgres_url, timeout=0.5)
        holder = await asyncpg.connect(postgres_url, statement_cache_size=0)
        try:
            await holder.execute("begin; lock table memlayer.memories in access exclusive mode")
            with pytest.raises(StorageUnavailable, match="TimeoutError"):
                await store.get_memory("someone", new_id())
            await holder.execute("rollback")
            assert await store.get_memory("someone", new_id()) is None  # and it recovers
        finally:
            await holder.close()
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("sqlstate", "unavailable"),
    [("40001", True), ("40P01", True), ("53300", True), ("55P03", True), ("23514", False)],
    ids=["serialization", "deadlock", "too-many-connections", "lock-not-available", "check"],
)
def test_which_database_errors_are_unavailable(
    postgres_url: str, sqlstate: str, unavailable: bool
) -> None:
    """The server raises each SQLSTATE from a trigger as the store creates a memory."""
    record = _memory(f"fault-{new_id()}")
    name = f"test_raise_{sqlstate.lower()}"

    async def main() -> None:
        admin = await asyncpg.connect(postgres_url, statement_cache_size=0)
        store = PostgresStore(postgres_url)
        try:
            await admin.execute(
                f"create function memlayer.{name}() returns trigger language plpgsql as"
                f" $$ begin raise exception 'test' using errcode = '{sqlstate}'; end $$;"
                f" create trigger {name} before insert on memlayer.memories for each row"
                f" when (new.user_id = '{record.user_id}') execute function memlayer.{name}()"
            )
            with pytest.raises((StorageUnavailable, asyncpg.PostgresError)) as raised:
                await store.create_memory(
                    record, job=None, default_limits=NO_LIMITS, idempotency=None
                )
            assert isinstance(raised.value, StorageUnavailable) is unavailable
            assert await store.get_memory(record.user_id, record.id) is None  # nothing written
        finally:
            await admin.execute(
                f"drop trigger {name} on memlayer.memories; drop function memlayer.{name}()"
            )
            await admin.close()
            await store.close()

    asyncio.run(main())
