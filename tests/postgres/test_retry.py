"""A connection that drops after the server committed, before its reply arrives: the store
retries the transaction, and a create that went through the first time is not applied (or
counted) twice, nor refused. The drop is real: the store talks to the embedded Postgres
through a unix-socket proxy that cuts the connection when it sees the server answer a COMMIT."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from memlayer.ids import new_id
from memlayer.models import Limits, MemoryRecord
from memlayer.storage.accounts import ApiKeyRecord
from memlayer.storage.base import IdempotencyClaim
from memlayer.storage.errors import VersionConflict
from memlayer.storage.postgres import PostgresStore
from memlayer.storage.uploads import UploadRecord

NO_LIMITS = Limits(daily_writes=0, max_memories=0, max_bytes=0)


class CommitCutter:
    """Forwards connections to the server's socket; while armed, the first connection that
    sends a COMMIT is closed when the server's reply to it comes back (so the commit is
    done, and the client never hears of it). `sends` counts what clients sent (each write
    that reached the proxy: a round trip's request)."""

    def __init__(self, server_socket: str) -> None:
        self.server_socket = server_socket
        self.armed = False
        self.cuts = 0
        self.sends = 0

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_unix_connection(self.server_socket)
        committing = asyncio.Event()

        async def upstream() -> None:
            while data := await client_r.read(65536):
                self.sends += 1
                if self.armed and b"COMMIT" in data.upper():
                    self.armed = False
                    committing.set()
                server_w.write(data)
                await server_w.drain()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if committing.is_set():
                    self.cuts += 1
                    return  # the server committed; the client gets nothing
                client_w.write(data)
                await client_w.drain()

        try:
            await asyncio.wait(
                [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())],
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for writer in (client_w, server_w):
                writer.close()


@contextlib.asynccontextmanager
async def cutting_proxy(url: str) -> AsyncIterator[tuple[str, CommitCutter]]:
    """A database URL through a CommitCutter in front of the server behind `url`."""
    parts = urlsplit(url)
    socket_dir = parse_qs(parts.query)["host"][0]
    port = parts.port or 5432
    cutter = CommitCutter(f"{socket_dir}/.s.PGSQL.{port}")
    with tempfile.TemporaryDirectory(prefix="memlayer-pg-proxy-") as proxy_dir:
        server = await asyncio.start_unix_server(
            cutter.handle, path=str(Path(proxy_dir) / f".s.PGSQL.{port}")
        )
        try:
            yield parts._replace(query=f"host={proxy_dir}").geturl(), cutter
        finally:
            server.close()


def _memory(user_id: str) -> MemoryRecord:
    from memlayer.services.memories import content_hash

    now = datetime.now(UTC)
    return MemoryRecord(
        user_id=user_id,
        id=new_id(),
        content="the staging database sits behind the pooler",
        kind="note",
        occurred_at=now,
        created_at=now,
        updated_at=now,
        content_hash=content_hash("the staging database sits behind the pooler"),
        size_bytes=43,
    )


def _run(postgres_url: str, test: Callable[[PostgresStore, CommitCutter], Awaitable[None]]) -> None:
    async def main() -> None:
        async with cutting_proxy(postgres_url) as (url, cutter):
            store = PostgresStore(url)
            try:
                await test(store, cutter)
            finally:
                await store.close()

    asyncio.run(main())


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotency-key"])
def test_create_memory_whose_commit_reply_was_lost_is_done_once(
    postgres_url: str, idempotent: bool
) -> None:
    async def test(store: PostgresStore, cutter: CommitCutter) -> None:
        record = _memory(f"retry-{new_id()}")
        claim = IdempotencyClaim("memories", new_id(), "body") if idempotent else None
        cutter.armed = True
        await store.create_memory(
            record,
            job=None,
            default_limits=NO_LIMITS,
            idempotency=claim,
            response={"id": record.id},
        )
        assert cutter.cuts == 1  # the first attempt's commit went through, unanswered
        assert await store.get_memory(record.user_id, record.id) == record
        usage = (await store.get_profile(record.user_id)).usage
        assert (usage.memories, usage.bytes, usage.writes_today) == (1, record.size_bytes, 1)
        assert await store.all_memories(record.user_id) == [record]

    _run(postgres_url, test)


def test_api_key_and_upload_whose_commit_reply_was_lost_are_created(postgres_url: str) -> None:
    async def test(store: PostgresStore, cutter: CommitCutter) -> None:
        uid, now = f"retry-{new_id()}", datetime.now(UTC)
        key = ApiKeyRecord(
            user_id=uid, id=new_id(), name="ci", scopes=["read"], prefix="mlk_ab", created_at=now
        )
        cutter.armed = True
        await store.create_api_key(key, f"hash-{new_id()}")
        upload = UploadRecord(
            user_id=uid,
            id=new_id(),
            filename="a.txt",
            content_type="text/plain",
            size=10,
            key=f"uploads/{uid}/a.txt",
            created_at=now,
            updated_at=now,
            url_expires_at=now + timedelta(minutes=5),
        )
        cutter.armed = True
        await store.put_upload(upload)
        assert cutter.cuts == 2
        assert [k.id for k in await store.list_api_keys(uid)] == [key.id]
        assert await store.all_uploads(uid) == [upload]

    _run(postgres_url, test)


def test_another_record_under_a_taken_id_is_a_conflict(postgres_url: str) -> None:
    async def test(store: PostgresStore, cutter: CommitCutter) -> None:
        record = _memory(f"retry-{new_id()}")
        await store.create_memory(record, job=None, default_limits=NO_LIMITS, idempotency=None)
        other = record.model_copy(update={"content": "something else", "content_hash": "x"})
        with pytest.raises(VersionConflict):
            await store.create_memory(other, job=None, default_limits=NO_LIMITS, idempotency=None)
        assert cutter.cuts == 0
        assert await store.get_memory(record.user_id, record.id) == record
        assert (await store.get_profile(record.user_id)).usage.memories == 1

    _run(postgres_url, test)
