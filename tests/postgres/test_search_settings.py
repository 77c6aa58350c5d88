"""What a Postgres search runs with, on the migrated database: the keyword index keeps no
pending list, and the HNSW scan's first pass is sized by the user's share of the table."""

from __future__ import annotations

import asyncio

import asyncpg

from memlayer.ids import new_id
from memlayer.storage import postgres


def test_keyword_index_keeps_no_pending_list(postgres_url: str) -> None:
    async def options() -> list[str]:
        conn = await asyncpg.connect(postgres_url, statement_cache_size=0)
        try:
            found = await conn.fetchval(
                "select reloptions from pg_class"
                " where oid = 'memlayer.memories_search_doc'::regclass"
            )
            return list(found or [])
        finally:
            await conn.close()

    assert "fastupdate=off" in asyncio.run(options())


def test_hnsw_first_pass_covers_the_depth_in_the_users_share(postgres_url: str) -> None:
    user_id = f"ef-{new_id()}"

    async def ef_search(memories: int | None, depth: int) -> tuple[float, int]:
        """The table's reltuples and the ef_search the legs set, with `memories` in the
        profile (none when None)."""
        admin = await asyncpg.connect(postgres_url, statement_cache_size=0)
        try:
            await admin.execute("delete from memlayer.profiles where user_id = $1", user_id)
            if memories is not None:
                await admin.execute(
                    "insert into memlayer.profiles (user_id, memories) values ($1, $2)",
                    user_id,
                    memories,
                )
            rows = await admin.fetchval(
                "select reltuples from pg_class where oid = 'memlayer.memories'::regclass"
            )
        finally:
            await admin.close()
        store = postgres.PostgresStore(postgres_url)
        try:

            async def op(conn: asyncpg.Connection) -> int:
                await conn.fetch(
                    "select * from memlayer.search_legs($1, 'Flights to Lisbon', null, 'x',"
                    " null, null, null, null, null, $2, 1000, 5000, 0.25, $3)",
                    user_id,
                    depth,
                    postgres.HNSW_EF_SEARCH,
                )
                return int(await conn.fetchval("select current_setting('hnsw.ef_search')"))

            # as the user (the profile is read under row-level security), in the search's
            # transaction
            return float(rows), await store._run(user_id, op)
        finally:
            await store.close()

    def expected(memories: int, rows: float, depth: int) -> float:
        share = max(memories, 1) / max(rows, memories, 1)  # reltuples is -1 before analyze
        return min(1_000.0, max(100.0, depth * 1.1 / share))

    rows, ef = asyncio.run(ef_search(2_000, 300))
    assert expected(2_000, rows, 300) <= ef < expected(2_000, rows, 300) + 1
    # no profile: counted as one memory, so the most the table's size allows
    rows, ef = asyncio.run(ef_search(None, 300))
    assert expected(0, rows, 300) <= ef < expected(0, rows, 300) + 1
