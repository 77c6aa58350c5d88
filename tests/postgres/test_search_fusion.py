"""`memlayer.search` fuses its two legs in SQL exactly as search/fusion.py `combine` fuses them
(one fusion, two implementations): the same hits, scores, ranks and similarities for every
mode, semantic weight, relevance floor and limit, over memories built to test the edges: tied
keyword ranks, tied vectors, shared dedupe keys, different ages."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from bench.retrieval.postgres_index import INSERT_MEMORIES_SQL
from memlayer.ids import new_id
from memlayer.models import MemoryRecord
from memlayer.search import fusion
from memlayer.search.fusion import Candidate, combine
from memlayer.services.memories import content_hash
from memlayer.storage import postgres

DIMS = 384
CENTERS = np.random.default_rng(4).standard_normal((4, DIMS)).astype(np.float32)
RANKS = ("semantic_rank", "keyword_rank", "similarity")
WORDS = ["lisbon", "flight", "porto", "train", "ferry", "garden", "tomato", "invoice"]


def _memories(user_id: str) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(3)
    now = datetime.now(UTC)
    rows = []
    for i in range(60):
        # every fifth text repeats the one before (tied keyword ranks, tied vectors)
        n = i - 1 if i % 5 == 4 else i
        text = " ".join(rng.choice(WORDS, 6)) if n == i else rows[-1][1]
        vector = rows[-1][2] if n != i else CENTERS[i % 4] + 0.7 * rng.standard_normal(DIMS)
        created = now - timedelta(days=int(rng.integers(0, 400)), minutes=i)
        record = MemoryRecord(
            user_id=user_id,
            id=new_id(),
            content=text,
            kind="note",
            status="ready",
            occurred_at=created,
            created_at=created,
            updated_at=created,
            content_hash=content_hash(text),
            size_bytes=len(text),
            embedding_space="fusion-test",
        )
        rows.append((record, text, vector))
    out = []
    for i, (record, _, vector) in enumerate(rows):
        values = list(postgres._memory_values(record))
        values[15] = f"dup-{i // 7}" if i % 7 < 2 else values[15]  # shared dedupe keys
        unit = (vector / np.linalg.norm(vector)).astype("<f2").tobytes()
        out.append((*values, postgres._halfvec(unit), DIMS, "fusion-test", values[10]))
    return out


async def _seed(url: str, user_id: str) -> None:
    conn = await asyncpg.connect(url, statement_cache_size=0)
    try:
        await conn.executemany(INSERT_MEMORIES_SQL, _memories(user_id))
    finally:
        await conn.close()


def uncollapsed(
    legs: list[Any], mode: Any, weight: float, floor: float | None, limit: int, now: float
) -> list[Any]:
    """`combine` without collapse: other hits than with it when near-duplicates met."""
    keyword = [row for row in legs if row["leg"] == "k"]
    return combine(
        [(row["score"], row["id"]) for row in keyword],
        [(row["score"], row["id"]) for row in legs if row["leg"] == "s"],
        lambda key: Candidate(key, "", now, None),
        mode=mode,
        coverage={row["id"]: row["coverage"] for row in keyword},
        terms=[],
        limit=limit,
        collapse=False,
        highlights=False,
        now=now,
        semantic_weight=weight,
        min_similarity=floor,
    )


def test_sql_fusion_is_fusion_py(postgres_url: str) -> None:
    user_id = f"fusion-{new_id()}"
    asyncio.run(_seed(postgres_url, user_id))
    rng = np.random.default_rng(5)
    # near one topic: the floors keep some of it
    query_vector = CENTERS[1] + 0.7 * rng.standard_normal(DIMS).astype(np.float32)
    query_vector = (query_vector / np.linalg.norm(query_vector)).astype(np.float16)
    now = time.time()
    cases = [
        (mode, query, weight, floor, limit)
        for mode in ("hybrid", "keyword", "semantic")
        for query, weight, floor, limit in (
            ("lisbon flight", 1.0, None, 10),
            ("porto ferry garden", 0.5, 0.1, 7),
            ("tomato", 2.0, None, 25),
            ("lisbon invoice train", 0.0, 0.4, 10),
        )
    ]

    async def run() -> None:
        conn = await asyncpg.connect(postgres_url, statement_cache_size=0)
        try:
            await conn.execute(
                "begin; select set_config('request.jwt.claims', $$"
                + json.dumps({"sub": user_id, "role": "authenticated"})
                + "$$, true), set_config('role', 'authenticated', true)"
            )
            tied = collapsed = False
            for mode, query, weight, floor, limit in cases:
                depth = max(limit * 4 + 32, 100) if mode == "hybrid" else limit + limit + 32
                legs_args = (
                    user_id,
                    query if mode != "semantic" else "",
                    query_vector.astype(np.float32).tolist() if mode != "keyword" else None,
                    "fusion-test",
                    *([None] * 5),
                    depth,
                    postgres.KEYWORD_CANDIDATES,
                    postgres.EXACT_SCAN_BELOW,
                    postgres.HNSW_MIN_SHARE,
                    postgres.HNSW_EF_SEARCH,
                )
                legs = await conn.fetch(
                    "select * from memlayer.search_legs("
                    + ", ".join(f"${n}" for n in range(1, 15))
                    + ")",
                    *legs_args,
                )
                found = await conn.fetch(
                    postgres._SEARCH_SQL,
                    *legs_args,
                    mode,
                    limit,
                    weight,
                    floor,
                    fusion.RRF_K,
                    fusion.RECENCY_WEIGHT,
                    fusion.RECENCY_HALF_LIFE_DAYS,
                    now,
                )
                keyword = [row for row in legs if row["leg"] == "k"]
                semantic = [row for row in legs if row["leg"] == "s"]
                candidates = {
                    row["id"]: Candidate(
                        row["id"], "", row["occurred_at"].timestamp(), row["dedupe_key"]
                    )
                    for row in legs
                }
                expected = combine(
                    [(row["score"], row["id"]) for row in keyword],
                    [(row["score"], row["id"]) for row in semantic],
                    candidates.__getitem__,
                    mode=mode,  # type: ignore[arg-type]
                    coverage={row["id"]: row["coverage"] for row in keyword},
                    terms=[],
                    limit=limit,
                    highlights=False,
                    now=now,
                    semantic_weight=weight,
                    min_similarity=floor,
                )
                case = (mode, query, weight, floor, limit)
                assert expected, case  # every case has hits to compare
                assert [(r["id"], round(r["score"], 6), *(r[c] for c in RANKS)) for r in found] == [
                    (h.memory_id, h.score, h.semantic_rank, h.keyword_rank, h.similarity)
                    for h in expected
                ], case
                # the records are the hits' own
                assert [json.loads(r["record"])["id"] for r in found] == [r["id"] for r in found]
                scores = [(row["leg"], row["score"]) for row in legs]
                tied |= len(scores) > len(set(scores))
                everything = uncollapsed(legs, mode, weight, floor, limit, now)
                collapsed |= [h.memory_id for h in everything] != [h.memory_id for h in expected]
            # the cases reach the edges: tied scores and collapsed near-duplicates
            assert tied and collapsed
        finally:
            await conn.close()

    asyncio.run(run())
