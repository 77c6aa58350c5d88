"""Row-level security, checked in SQL on the migrated database: connected as role
`authenticated` with user B's claims, every user-owned table shows only B's rows, and an
insert naming another user is refused."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

NOW = datetime.now(UTC)
LATER = NOW + timedelta(days=1)


def _row(table: str, user_id: str, n: int) -> dict[str, Any]:
    """A valid row of `table` owned by `user_id` (n makes keys unique)."""
    record = json.dumps({"n": n})
    rows: dict[str, dict[str, Any]] = {
        "profiles": {},
        "day_counters": {"day": (NOW + timedelta(days=n)).date(), "expires_at": LATER},
        "memories": {
            "id": f"m{n}",
            "kind": "note",
            "status": "ready",
            "version": 1,
            "content": f"text {n}",
            "content_hash": f"h{n}",
            "created_at": NOW,
            "updated_at": NOW,
            "size_bytes": 6,
            "record": record,
        },
        "jobs": {"id": f"j{n}", "record": record, "expires_at": LATER},
        "idempotency_keys": {
            "scope": "memories",
            "key": f"k{n}",
            "body_hash": "h",
            "response": record,
            "expires_at": LATER,
        },
        "rate_limits": {"key": f"user#{user_id}#{n}", "tat": float(n), "expires_at": LATER},
        "api_keys": {"id": f"a{n}", "key_hash": f"{user_id}-{n}", "record": record},
        "connections": {"connection_id": f"{user_id}-c{n}", "expires_at": LATER},
        "captures": {
            "provider": "chatgpt",
            "conversation_id": f"c{n}",
            "capture_id": f"p{n}",
            "record": record,
            "expires_at": LATER,
        },
        "uploads": {
            "id": f"u{n}",
            "status": "awaiting",
            "version": 1,
            "created_at": NOW,
            "record": record,
        },
    }
    return {"user_id": user_id, **rows[table]}


async def _insert(conn: asyncpg.Connection, table: str, row: dict[str, Any]) -> None:
    columns = ", ".join(row)
    params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    await conn.execute(f"insert into memlayer.{table} ({columns}) values ({params})", *row.values())


async def _as_user(conn: asyncpg.Connection, user_id: str) -> None:
    await conn.execute(
        "select set_config('request.jwt.claims', $1, true),"
        " set_config('role', 'authenticated', true)",
        json.dumps({"sub": user_id, "role": "authenticated"}),
    )


async def _check(url: str) -> None:
    conn = await asyncpg.connect(url, statement_cache_size=0)
    try:
        owned = [
            r["table_name"]
            for r in await conn.fetch(
                "select table_name from information_schema.columns c"
                " join information_schema.tables t using (table_schema, table_name)"
                " where table_schema = 'memlayer' and column_name = 'user_id'"
                " and t.table_type = 'BASE TABLE' order by table_name"
            )
        ]
        # every user-owned table is covered here, and has row-level security on
        assert owned == sorted(_TABLES)
        unprotected = await conn.fetch(
            "select relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'memlayer' and c.relkind = 'r' and not c.relrowsecurity"
        )
        assert [r["relname"] for r in unprotected] == []

        alice, bob = "rls-alice", "rls-bob"
        for table in owned:  # as the connecting superuser, which RLS does not restrict
            rows = [_row(table, alice, 1), _row(table, bob, 3)]
            if table != "profiles":  # one profile per user
                rows.append(_row(table, alice, 2))
            for row in rows:
                await _insert(conn, table, row)

        for table in owned:
            async with conn.transaction():
                await _as_user(conn, bob)
                assert await conn.fetchval("select current_user") == "authenticated"
                seen = await conn.fetch(f"select user_id from memlayer.{table}")
                assert [r["user_id"] for r in seen] == [bob], table
                # an update or delete of Alice's rows touches nothing
                assert (
                    await conn.execute(f"delete from memlayer.{table} where user_id = $1", alice)
                    == "DELETE 0"
                )
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction():
                    await _as_user(conn, bob)
                    await _insert(conn, table, _row(table, alice, 9))
            # and the service role still sees both users' rows
            users = await conn.fetch(
                f"select distinct user_id from memlayer.{table} where user_id = any($1)",
                [alice, bob],
            )
            assert {r["user_id"] for r in users} == {alice, bob}, table
        # the view search reads through (it bypasses the table's RLS to let the planner use
        # the GIN index) keeps users apart itself: Bob's claims see Bob's memories only, and
        # a transaction with no claims sees none
        async with conn.transaction():
            await _as_user(conn, bob)
            seen = await conn.fetch("select user_id from memlayer.search_memories")
            assert [r["user_id"] for r in seen] == [bob]
        async with conn.transaction():
            await conn.execute("set local role authenticated")
            assert await conn.fetch("select id from memlayer.search_memories") == []
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute("set local role anon")
                await conn.fetch("select id from memlayer.search_memories")
    finally:
        await conn.close()


_TABLES = (
    "api_keys",
    "captures",
    "connections",
    "day_counters",
    "idempotency_keys",
    "jobs",
    "memories",
    "profiles",
    "rate_limits",
    "uploads",
)


def test_authenticated_sees_and_writes_only_its_own_rows(postgres_url: str) -> None:
    asyncio.run(_check(postgres_url))


def test_claims_reach_the_database_whatever_the_user_id_holds(postgres_url: str) -> None:
    """The store sets the claims as SQL text (one simple-protocol query opens each
    transaction): quotes, backslashes and escapes in a `sub` arrive as they are."""
    from memlayer.storage.postgres import PostgresStore

    user_ids = ["o'brien\\'; select 1; --", 'a"b\\nc', "\\x41\\u0041", "ünï €"]

    async def subjects() -> list[str | None]:
        store = PostgresStore(postgres_url)
        try:
            return [
                await store._run(uid, lambda conn: conn.fetchval("select auth.jwt() ->> 'sub'"))
                for uid in user_ids
            ]
        finally:
            await store.close()

    assert asyncio.run(subjects()) == user_ids
