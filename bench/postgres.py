"""Postgres backend (STORAGE_BACKEND=supabase): search latency and HNSW recall for one user
with 1k / 10k / 100k memories, and ingest throughput through the store, on an embedded
Postgres 18 + pgvector.

    python -m bench.postgres [--sizes 1000,10000,100000] [--queries 50] [--ingest 1000]

Search is timed warm (the pool open, the query vector given: embedding excluded) through
`PostgresSearch.search` (SQL legs + search/fusion.py), in hybrid mode as the API runs it and in
each single mode. Each query is a memory's vector moved by noise of 0.3 of its length (cosine
about 0.95 to it) and three of its words. Recall@10 compares semantic-mode search as it runs
(HNSW from EXACT_SCAN_BELOW memories on) with the same search forced to an exact scan. Writes
bench/results/postgres.json, with the load average the machine had."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "memlayer"), str(ROOT)]

DIMS = 384  # all-MiniLM-L6-v2, the local model
WORDS = [
    "flight",
    "lisbon",
    "porto",
    "train",
    "ferry",
    "madeira",
    "database",
    "staging",
    "pooler",
    "port",
    "kubernetes",
    "probe",
    "pod",
    "apple",
    "pie",
    "cinnamon",
    "butter",
    "recipe",
    "garden",
    "tomato",
    "invoice",
    "budget",
    "meeting",
    "roadmap",
    "design",
    "api",
    "python",
    "rust",
    "postgres",
    "vector",
    "index",
    "search",
    "memory",
    "cache",
    "lambda",
    "queue",
    "deploy",
    "release",
    "bug",
    "holiday",
    "beach",
    "hiking",
    "camera",
    "lens",
    "piano",
    "recital",
    "guitar",
    "chord",
    "novel",
    "chapter",
    "poem",
    "essay",
]


def _corpus(n: int, seed: int) -> tuple[Any, list[str]]:
    """n unit vectors in 200 topic clusters (like real embeddings, not uniform noise) and a
    short text per memory."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((200, DIMS)).astype(np.float32)
    topic = rng.integers(0, 200, n)
    vectors = centers[topic] + 0.6 * rng.standard_normal((n, DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [" ".join(rng.choice(WORDS, 12)) for _ in range(n)]
    return vectors.astype(np.float16), texts


async def _seed(url: str, user_id: str, n: int) -> float:
    import asyncpg

    from memlayer.ids import new_id
    from memlayer.models import MemoryRecord
    from memlayer.services.memories import content_hash
    from memlayer.storage.postgres import _halfvec, _memory_values

    vectors, texts = _corpus(n, seed=n)
    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        created = now - timedelta(minutes=n - i)
        record = MemoryRecord(
            user_id=user_id,
            id=new_id(),
            content=texts[i],
            kind="note",
            status="ready",
            occurred_at=created,
            created_at=created,
            updated_at=created,
            content_hash=content_hash(texts[i]),
            size_bytes=len(texts[i]),
            embedding_space="bench",
        )
        values = list(_memory_values(record))
        rows.append(
            (*values, _halfvec(vectors[i].astype("<f2").tobytes()), DIMS, "bench", values[10])
        )
    columns = (
        "user_id, id, kind, status, version, provider, tags, search_tags, title, content,"
        " content_hash, created_at, updated_at, size_bytes, job_id, dedupe_key, record,"
        " embedding, embedding_dims, embedding_space, embedding_hash"
    )
    conn = await asyncpg.connect(url, statement_cache_size=0)
    started = time.perf_counter()
    try:
        # Loading first and building the index after is how a bulk import would do it.
        index = f"memories_embedding_{DIMS}"
        definition = await conn.fetchval(
            "select indexdef from pg_indexes where indexname = $1", index
        )
        await conn.execute(f"drop index memlayer.{index}")
        await conn.execute("set maintenance_work_mem = '512MB'")
        for start in range(0, n, 2000):
            await conn.executemany(
                f"insert into memlayer.memories ({columns}) values ($1, $2, $3, $4, $5, $6, $7,"  # noqa: S608
                " $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb, $18::halfvec, $19, $20,"
                " $21)",
                rows[start : start + 2000],
            )
        await conn.execute(
            "insert into memlayer.profiles (user_id, memories) values ($1, $2)", user_id, n
        )
        await conn.execute(definition)
        await conn.execute("analyze memlayer.memories")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def _search_bench(url: str, user_id: str, n: int, queries: int) -> dict[str, Any]:
    import numpy as np

    from memlayer.storage import postgres

    store = postgres.PostgresStore(url)
    search = postgres.PostgresSearch(store)
    postgres._embedding_space = lambda: "bench"  # type: ignore[assignment]
    vectors, texts = _corpus(n, seed=n)
    rng = np.random.default_rng(7)
    picks = rng.integers(0, n, queries)
    # Noise of 0.3 of the (unit) vector's length: each query stays near its memory, as a
    # paraphrase does. (0.3 per dimension would be 6x the vector: a random direction.)
    noise = rng.standard_normal((queries, DIMS)).astype(np.float32)
    qvecs = vectors[picks].astype(np.float32) + 0.3 * noise / np.sqrt(DIMS)
    qvecs /= np.linalg.norm(qvecs, axis=1, keepdims=True)
    qtexts = [" ".join(texts[i].split()[:3]) for i in picks]

    async def ids(i: int, mode: Any) -> list[str]:
        hits = await search.search(
            user_id,
            qtexts[i],
            qvecs[i],
            mode=mode,
            filters=None,
            limit=10,
            semantic_weight=1.0,
            min_similarity=None,
        )
        return [record.id for record, _ in hits]

    async def timed(mode: str) -> dict[str, float]:
        for i in range(queries):  # warm: the pool open, the pages these queries read cached
            await ids(i, mode)
        backends = await _backend_pids(url)
        client0, server0 = time.process_time(), _cpu_seconds(backends)
        timings = []
        for i in range(queries):
            t0 = time.perf_counter()
            await ids(i, mode)
            timings.append((time.perf_counter() - t0) * 1000)
        client = time.process_time() - client0
        server = _cpu_seconds(backends) - server0
        timings.sort()
        return {
            "p50": round(statistics.median(timings), 2),
            "p95": round(timings[int(0.95 * (len(timings) - 1))], 2),
            # CPU of this process and of the server backends per search: what a search costs
            # on cores of its own (other work on a shared machine inflates wall time only)
            "cpu_mean": round((client + server) * 1000 / queries, 2),
            "cpu_server_mean": round(server * 1000 / queries, 2),
        }

    row: dict[str, Any] = {"memories": n}
    for mode in ("hybrid", "keyword", "semantic"):
        row[f"{mode}_ms"] = timed_mode = await timed(mode)
        print(n, mode, timed_mode, flush=True)
    row["memories_in_table"] = await _table_rows(url)
    hnsw = (
        n >= postgres.EXACT_SCAN_BELOW and n / row["memories_in_table"] >= postgres.HNSW_MIN_SHARE
    )
    row["semantic_leg"] = "hnsw" if hnsw else "exact scan"
    shipped = postgres.EXACT_SCAN_BELOW
    recalls = []
    for i in range(queries):
        postgres.EXACT_SCAN_BELOW = 10**9
        truth = await ids(i, "semantic")
        postgres.EXACT_SCAN_BELOW = shipped
        found = await ids(i, "semantic")
        recalls.append(len(set(truth) & set(found)) / max(1, len(truth)))
    row["semantic_recall_at_10_vs_exact"] = round(statistics.mean(recalls), 4)
    row["load_average_1m"] = round(os.getloadavg()[0], 1)  # what the wall times ran beside
    await store.close()
    return row


async def _table_rows(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url, statement_cache_size=0)
    try:
        return int(await conn.fetchval("select count(*) from memlayer.memories"))
    finally:
        await conn.close()


async def _backend_pids(url: str) -> list[int]:
    """The server processes serving the other connections (the store's pool)."""
    import asyncpg

    conn = await asyncpg.connect(url, statement_cache_size=0)
    try:
        rows = await conn.fetch(
            "select pid from pg_stat_activity"
            " where backend_type = 'client backend' and pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these (local) processes, from /proc."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def _ingest_bench(url: str, n: int) -> dict[str, Any]:
    """create_memory through the store (each its own transaction with quota, daily counter
    and profile updates), 8 at a time as concurrent requests would."""
    from memlayer.ids import new_id
    from memlayer.models import Limits, MemoryRecord
    from memlayer.services.memories import content_hash
    from memlayer.storage.postgres import PostgresStore

    store = PostgresStore(url)
    user_id = f"ingest-{new_id()}"
    limits = Limits(daily_writes=0, max_memories=0, max_bytes=0)
    _, texts = _corpus(n, seed=1)
    gate = asyncio.Semaphore(8)

    async def one(text: str) -> None:
        now = datetime.now(UTC)
        record = MemoryRecord(
            user_id=user_id,
            id=new_id(),
            content=text,
            kind="note",
            occurred_at=now,
            created_at=now,
            updated_at=now,
            content_hash=content_hash(text),
            size_bytes=len(text),
        )
        async with gate:
            await store.create_memory(record, job=None, default_limits=limits, idempotency=None)

    await one("warm up")
    t0 = time.perf_counter()
    await asyncio.gather(*(one(text) for text in texts))
    seconds = time.perf_counter() - t0
    await store.close()
    return {"memories": n, "seconds": round(seconds, 2), "per_second": round(n / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--ingest", type=int, default=1000)
    args = parser.parse_args()

    from infra.supabase.embedded import embedded_postgres
    from memlayer.ids import new_id
    from memlayer.storage import postgres

    results: dict[str, Any] = {"search": [], "ingest": None}
    settings = {
        "EXACT_SCAN_BELOW": postgres.EXACT_SCAN_BELOW,
        "HNSW_MIN_SHARE": postgres.HNSW_MIN_SHARE,
        "HNSW_EF_SEARCH": postgres.HNSW_EF_SEARCH,
        "KEYWORD_CANDIDATES": postgres.KEYWORD_CANDIDATES,
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        embedded_postgres(Path(tmp) / "pg", keep_data=False) as url,
    ):
        for n in (int(s) for s in args.sizes.split(",") if s):
            user_id = f"bench-{n}-{new_id()}"
            seed_s = asyncio.run(_seed(url, user_id, n))
            row = asyncio.run(_search_bench(url, user_id, n, args.queries))
            row["seed_seconds"] = round(seed_s, 1)
            print(json.dumps(row), flush=True)
            results["search"].append(row)
        if args.ingest:
            results["ingest"] = asyncio.run(_ingest_bench(url, args.ingest))
            print(json.dumps(results["ingest"]), flush=True)
    results["settings"] = settings
    results["load_average_1m_at_end"] = round(os.getloadavg()[0], 1)
    out = ROOT / "bench" / "results" / "postgres.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
