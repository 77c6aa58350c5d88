"""Search latency through the product's search path on the DynamoDB backend, warm, with the
time boost and the neighbouring turns: what `/v1/search` costs beyond the index itself.

Under in-process moto: one user with N memories that are chat turns (the conversational
bench's dialogues, bench/retrieval/dialogue.py, one user's sessions after another's, each turn
with its `source.conversation_id` and `occurred_at`), written straight into the table with
hash-embedder vectors. The warm container's index is loaded once; then every question of those
dialogues (a third of them name a time: "in March", "last week") runs through
`services.retrieval` as the API calls it:

- `search`: `retrieval.search` (what `POST /v1/search` runs: `ranked()` + the response
  models), hybrid, limit 10; `search + expand`: the same with `expand` (the neighbours);
- `context`: `ranked()` as `/v1/context` calls it (20 deep, related only, neighbours);
- `index only`: `UserIndex.search` alone, what bench/retrieval/run.py times.

The query embedding is excluded (each query's vector is computed once before timing and served
from memory). `ranked()` reads the user's `data_version` (a `GetItem`) to know its index is
current; under moto that read costs milliseconds of moto's Python, not DynamoDB's, so each
figure is reported with the version read (as measured through moto) and without it (served
from memory: what the search path itself costs).

    python -m bench.retrieval.latency [--memories 10000] [--queries 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "latency.json"
USER = "bench-latency-user"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    from bench.inprocess import in_process_aws

    with in_process_aws(DEFAULT_MAX_MEMORIES="0"):
        result = asyncio.run(_measure(args.memories, args.queries))
    out = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **result,
    }
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


def _turns(n: int) -> tuple[list[Any], list[str]]:
    """N chat turns as records (users' dialogues one after another) and their questions."""
    from bench.retrieval.dialogue import IMPORTED_AT, make_dialogue_corpus
    from memlayer.ids import new_id
    from memlayer.models import MemoryRecord, Source
    from memlayer.services.memories import content_hash

    imported = datetime.fromtimestamp(IMPORTED_AT, UTC)
    records: list[Any] = []
    questions: list[str] = []
    seed = 1
    while len(records) < n:
        corpus = make_dialogue_corpus(seed)
        questions += [q.text for q in corpus.questions]
        for doc in corpus.docs:
            assert doc.occurred_at is not None
            records.append(
                MemoryRecord(
                    user_id=USER,
                    id=new_id(),
                    content=doc.text,
                    kind="exchange",
                    status="ready",
                    source=Source(
                        provider="claude", conversation_id=corpus.session_of[doc.memory_id]
                    ),
                    occurred_at=datetime.fromtimestamp(doc.occurred_at, UTC),
                    created_at=imported,
                    updated_at=imported,
                    content_hash=content_hash(doc.text),
                    size_bytes=len(doc.text.encode()),
                )
            )
        seed += 1
    return records[:n], questions


def _pct(values: list[float], q: float) -> float:
    import numpy as np

    return round(float(np.percentile(np.asarray(values), q)) * 1000.0, 3)


async def _measure(n: int, query_count: int) -> dict[str, Any]:
    from bench.inprocess import write_ready_memories
    from memlayer import aws
    from memlayer.api.retrieval import SearchIn
    from memlayer.search.timeexpr import resolve
    from memlayer.services import retrieval
    from memlayer.storage import get_search_index, get_store

    records, questions = _turns(n)
    started = time.perf_counter()
    records[:] = await write_ready_memories(USER, records)
    seed_seconds = time.perf_counter() - started
    index: Any = get_search_index()  # the DynamoDB backend's InMemorySearch
    t0 = time.perf_counter()
    cached = await index.user_index(USER)
    load_seconds = time.perf_counter() - t0
    assert len(cached.records) == n
    queries = (questions * (query_count // max(1, len(questions)) + 1))[:query_count]

    # the query embedding is excluded: each query's vector is computed once, then served
    vectors: dict[tuple[str, str], Any] = {}
    query_vector = retrieval._query_vector

    async def remembered(text: str, mode: Any) -> Any:
        if (text, mode) not in vectors:
            vectors[(text, mode)] = await query_vector(text, mode)
        return vectors[(text, mode)]

    retrieval._query_vector = remembered  # type: ignore[assignment]
    calls = {"n": 0}

    def counted(**_: Any) -> None:
        calls["n"] += 1

    aws.client("dynamodb").meta.events.register("before-call.dynamodb", counted)

    async def search(query: str) -> Any:
        return await retrieval.search(USER, SearchIn(query=query))

    async def search_expand(query: str) -> Any:
        return await retrieval.search(USER, SearchIn(query=query, expand=True))

    async def context(query: str) -> Any:
        return await retrieval.ranked(
            USER,
            query,
            mode="hybrid",
            limit=retrieval.SEARCH_DEPTH_FOR_CONTEXT,
            related_only=True,
            expand=True,
        )

    async def index_only(query: str) -> Any:
        period = resolve(query)  # the words `ranked()` searches with, its vector
        text = (period.strip_from(query) or query) if period else query
        return cached.index.search(text, vectors[(text, "hybrid")], limit=10)

    paths = {
        "search": search,
        "search + expand": search_expand,
        "context": context,
        "index only": index_only,
    }
    store: Any = get_store()
    version_read = store.index_version
    current = await version_read(USER)

    async def from_memory(user_id: str) -> Any:
        return current

    results: dict[str, Any] = {}
    for version in ("through moto", "from memory"):
        store.index_version = version_read if version == "through moto" else from_memory
        for name, run in paths.items():
            if name == "index only" and version == "from memory":
                continue
            for query in queries[:20]:  # warm: vectors computed, code paths hot
                await run(query)
            times: list[float] = []
            cpu: list[float] = []
            calls["n"] = 0
            for query in queries:
                c0, t0 = time.process_time(), time.perf_counter()
                await run(query)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            label = name if name == "index only" else f"{name}, version read {version}"
            results[label] = {
                "p50_ms": _pct(times, 50),
                "p95_ms": _pct(times, 95),
                "cpu_p50_ms": _pct(cpu, 50),
                "cpu_p95_ms": _pct(cpu, 95),
                "dynamodb_requests_per_query": round(calls["n"] / len(queries), 2),
            }
            print(f"{label}: {results[label]}", flush=True)
    store.index_version = version_read
    retrieval._query_vector = query_vector  # type: ignore[assignment]
    timed = sum(1 for q in queries if resolve(q) is not None)
    return {
        "memories": n,
        "conversations": len({r.source.conversation_id for r in records}),
        "queries": len(queries),
        "queries_naming_a_time": timed,
        "seed_seconds": round(seed_seconds, 1),
        "first_load_seconds": round(load_seconds, 1),
        "latency": results,
    }


if __name__ == "__main__":
    raise SystemExit(main())
