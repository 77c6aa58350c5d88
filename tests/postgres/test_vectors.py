"""A stored vector's text form (`storage.postgres._halfvec`, five significant digits) is read by
pgvector as exactly the float16 values it was made from: every finite float16."""

from __future__ import annotations

import asyncio

import asyncpg
import numpy as np

from memlayer.storage.postgres import _halfvec


def test_every_float16_survives_the_text_form(postgres_url: str) -> None:
    every = np.arange(2**16, dtype=np.uint16).view("<f2")
    finite = every[np.isfinite(every)]
    vectors = [finite[start : start + 512] for start in range(0, len(finite), 512)]

    async def read_back() -> list[list[float]]:
        conn = await asyncpg.connect(postgres_url, statement_cache_size=0)
        try:
            rows = await conn.fetch(
                "select (t::halfvec)::real[] from unnest($1::text[]) t",
                [_halfvec(v.tobytes()) for v in vectors],
            )
        finally:
            await conn.close()
        return [row[0] for row in rows]

    read = asyncio.run(read_back())
    assert len(read) == len(vectors)
    for vector, back in zip(vectors, read, strict=True):
        assert np.array_equal(np.asarray(back, dtype=np.float32).astype("<f2"), vector)
