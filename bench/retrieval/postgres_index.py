"""The retrieval bench against the Postgres backend: one user's corpus stored in an embedded
Postgres (rows, vectors, profile), searched through `PostgresSearch.search` exactly as the API
searches, behind the few methods of `UserIndex` that bench/retrieval/run.py calls.

    PYTHONPATH=layers/memlayer:. .venv/bin/python -m bench.retrieval.run --backend postgres

Creation times move by (wall clock - the bench's fixed `now`), so every memory has the age
it has in the in-memory run and the recency boost weighs the same."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from memlayer.search.fusion import Hit
from memlayer.search.index import IndexedDoc, SearchMode

SPACE = "bench"


class PostgresIndex:
    def __init__(self, url: str, user_id: str, build_seconds: float) -> None:
        from memlayer.storage import postgres

        # the bench's vectors come from its own embedders, whatever the settings name
        postgres._embedding_space = lambda: SPACE  # type: ignore[assignment]
        self.user_id = user_id
        self.build_seconds = build_seconds
        self.loop = asyncio.new_event_loop()
        self.store = postgres.PostgresStore(url)
        self.search_port = postgres.PostgresSearch(self.store)

    @classmethod
    def build(cls, url: str, docs: list[IndexedDoc], dims: int, now: float) -> PostgresIndex:
        from memlayer.ids import new_id

        user_id = f"retrieval-{new_id()}"
        started = time.perf_counter()
        asyncio.run(_load(url, user_id, docs, dims, shift=time.time() - now))
        return cls(url, user_id, time.perf_counter() - started)

    def search(
        self,
        query_text: str,
        query_vector: np.ndarray | None = None,
        *,
        mode: SearchMode = "hybrid",
        limit: int = 10,
        semantic_weight: float = 1.0,
        **_: Any,  # collapse, highlights, now: the backend always collapses, highlights, uses now
    ) -> list[Hit]:
        found = self.loop.run_until_complete(
            self.search_port.search(
                self.user_id,
                query_text,
                query_vector,
                mode=mode,
                filters=None,
                limit=limit,
                semantic_weight=semantic_weight,
                min_similarity=None,
            )
        )
        return [hit for _, hit in found]

    def memory_bytes(self) -> int:
        return 0  # nothing held in the process

    def disk_bytes(self) -> int:
        return 0  # shared tables: see bench/results/postgres.json for sizes

    def close(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()


# One row per memory: `storage.postgres._memory_values` of the record, then its vector columns
# (halfvec text, dims, space, embedding hash). Straight into the table: the bench and the
# fusion test load thousands of memories, not through the store one at a time.
INSERT_MEMORIES_SQL = (
    "insert into memlayer.memories (user_id, id, kind, status, version, provider, tags,"
    " search_tags, title, content, content_hash, created_at, updated_at, size_bytes,"
    " job_id, dedupe_key, record, embedding, embedding_dims, embedding_space,"
    " embedding_hash) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
    " $14, $15, $16, $17::jsonb, $18::halfvec, $19, $20, $21)"
)


async def _load(url: str, user_id: str, docs: list[IndexedDoc], dims: int, shift: float) -> None:
    import asyncpg

    from memlayer.models import MemoryRecord
    from memlayer.services.memories import content_hash
    from memlayer.storage.postgres import _halfvec, _memory_values, _normalize_tag

    rows = []
    for doc in {d.memory_id: d for d in docs}.values():
        created = datetime.fromtimestamp(doc.created_at + shift, UTC)
        record = MemoryRecord(
            user_id=user_id,
            id=doc.memory_id,
            content=doc.text,
            kind=doc.kind,  # type: ignore[arg-type]
            status=doc.status,  # type: ignore[arg-type]
            tags=list(doc.tags),
            occurred_at=created,
            created_at=created,
            updated_at=created,
            content_hash=content_hash(doc.text),
            size_bytes=len(doc.text.encode()),
        )
        values = list(_memory_values(record))
        values[7] = sorted({_normalize_tag(t) for t in doc.tags})  # search_tags
        values[8] = doc.title
        values[15] = doc.dedupe_key
        vector = None if doc.vector is None else np.asarray(doc.vector, dtype="<f2").tobytes()
        rows.append(
            (
                *values,
                _halfvec(vector) if vector else None,
                dims if vector else None,
                SPACE if vector else None,
                record.content_hash if vector else None,
            )
        )
    conn = await asyncpg.connect(url, statement_cache_size=0)
    try:
        await conn.executemany(INSERT_MEMORIES_SQL, rows)
        await conn.execute(
            "insert into memlayer.profiles (user_id, memories) values ($1, $2)", user_id, len(rows)
        )
        await conn.execute("analyze memlayer.memories")
    finally:
        await conn.close()
