"""What a search pays after a write: catching up from the change log vs reloading everything.

Under in-process moto: one user with N memories (written straight into the table with their
hash-embedder vectors, so seeding is fast), a warm index, then for each round one memory is
edited through the service and the next search's `user_index` is timed — once catching up from
the change log, once with catching up disabled (a full reload, what every write cost before).
Reports the median time and the DynamoDB requests of each. The request counts are the
hardware-independent figure: moto spends milliseconds of Python CPU per request, and its Query
walks the user's whole partition even for a narrow key range (the change log's), which real
DynamoDB does not.

    python -m bench.retrieval.refresh [--memories 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "refresh.json"
USER = "bench-user"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    from bench.inprocess import in_process_aws

    with in_process_aws(DEFAULT_MAX_MEMORIES="0"):
        result = asyncio.run(_measure(args.memories, args.rounds))
    out = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **result}
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


async def seed(n: int) -> None:
    """`n` ready notes of USER on six topics, written straight into the table."""
    from bench.inprocess import write_ready_memories
    from memlayer.ids import new_id, utcnow
    from memlayer.models import MemoryRecord
    from memlayer.services.memories import content_hash

    topics = ["kubernetes", "sourdough", "tax return", "marathon", "rust lifetimes", "lisbon"]
    now = utcnow()
    records = []
    for i in range(n):
        text = f"Note {i} about {topics[i % len(topics)]}: detail {i * 7919 % 10007} " * 3
        records.append(
            MemoryRecord(
                user_id=USER,
                id=new_id(),
                content=text,
                kind="note",
                status="ready",
                occurred_at=now,
                created_at=now,
                updated_at=now,
                content_hash=content_hash(text),
                size_bytes=len(text),
            )
        )
    await write_ready_memories(USER, records)


async def _measure(n: int, rounds: int) -> dict[str, Any]:
    from memlayer import aws
    from memlayer.api.memories import MemoryPatch
    from memlayer.services import memories
    from memlayer.storage import dynamo_search as retrieval
    from memlayer.storage import get_search_index

    index: Any = get_search_index()  # the DynamoDB backend's InMemorySearch
    started = time.perf_counter()
    await seed(n)
    seed_seconds = time.perf_counter() - started
    calls = {"n": 0}

    def counted(**_: Any) -> None:
        calls["n"] += 1

    aws.client("dynamodb").meta.events.register("before-call.dynamodb", counted)
    t0 = time.perf_counter()
    cached = await index.user_index(USER)
    first_load = {
        "ms": round((time.perf_counter() - t0) * 1000, 1),
        "dynamodb_requests": calls["n"],
    }
    assert len(cached.records) == n
    ids = list(cached.records)
    timings: dict[str, list[float]] = {"catch_up": [], "full_reload": []}
    requests: dict[str, list[int]] = {"catch_up": [], "full_reload": []}
    for i in range(rounds):
        for how in ("catch_up", "full_reload"):
            retrieval.CATCH_UP_MAX_CHANGES = 500 if how == "catch_up" else 0
            before = retrieval._cache[USER].index
            await memories.patch(
                USER, ids[i], MemoryPatch(content=f"edited {how} {i}"), if_match=None
            )
            calls["n"] = 0
            t0 = time.perf_counter()
            after = (await index.user_index(USER)).index
            timings[how].append(time.perf_counter() - t0)
            requests[how].append(calls["n"])
            assert (after is before) == (how == "catch_up"), how
            hits = after.search(f"edited {how} {i}", None, mode="keyword", limit=1)
            assert hits and hits[0].memory_id == ids[i], how
    return {
        "memories": n,
        "rounds": rounds,
        "seed_seconds": round(seed_seconds, 1),
        "first_load": first_load,
        **{
            how: {
                "p50_ms": round(statistics.median(timings[how]) * 1000, 1),
                "dynamodb_requests": statistics.median(requests[how]),
            }
            for how in timings
        },
    }


if __name__ == "__main__":
    raise SystemExit(main())
