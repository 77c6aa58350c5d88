"""Ingest throughput and per-stage latency of the enrichment pipeline, offline providers.

Runs the local cloud (moto + the template's queues and workers, with the template's batch
sizes), creates N memories over HTTP, and waits until every one is `ready`. Reports create
request latency, memories/s through both workers, per-stage latency from the jobs' stage
times, and embedding calls per memory (one batched call per SQS batch).

    python -m bench.pipeline [--memories 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "pipeline.json"
SECRET = "bench-secret-bench-secret-bench-secret"

TOPICS = ["kubernetes", "sourdough", "tax return", "marathon", "rust lifetimes", "lisbon trip"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _t(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memories", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    from infra.localcloud import LocalCloud
    from memlayer.auth.jwt import mint_dev_token

    env = {
        "SUPABASE_JWT_SECRET": SECRET,
        "ANTHROPIC_API_KEY": None,
        "OPENAI_API_KEY": None,
        "EMBEDDINGS_PROVIDER": "hash",
        "LOG_LEVEL": "ERROR",
        "DEFAULT_DAILY_WRITES": "0",
        "RATE_LIMIT_PER_USER_PER_MIN": "0",
        "RATE_LIMIT_PER_IP_PER_MIN": "0",
    }
    with LocalCloud(ROOT / "template.yaml", port=0, env_overrides=env, schedules=False) as cloud:
        token = mint_dev_token(SECRET, "bench-user")
        client = httpx.Client(
            base_url=cloud.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

        def create(i: int) -> float:
            body = {"content": f"Note {i} about {TOPICS[i % len(TOPICS)]}: " + "details " * 40}
            t0 = time.perf_counter()
            response = client.post("/v1/memories", json=body)
            assert response.status_code == 201, response.text
            return (time.perf_counter() - t0) * 1000

        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            latencies = list(pool.map(create, range(args.memories)))
        created_s = time.perf_counter() - started
        cloud.drain(timeout=600)
        total_s = time.perf_counter() - started

        items, cursor = [], None
        while True:
            page = client.get(
                "/v1/memories", params={"limit": 100, **({"cursor": cursor} if cursor else {})}
            ).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        ready = sum(1 for item in items if item["status"] == "ready")
        stages: dict[str, list[float]] = {"queue_wait": [], "analyze": [], "embed": [], "total": []}
        for item in items[:200]:
            job = client.get(f"/v1/jobs/{item['job_id']}").json()
            times = {k: _t(v) for k, v in job["stage_times"].items()}
            created = _t(job["created_at"])
            stages["queue_wait"].append((times["analyzing"] - created) * 1000)
            stages["analyze"].append((times["embedding"] - times["analyzing"]) * 1000)
            stages["embed"].append((times["completed"] - times["embedding"]) * 1000)
            stages["total"].append((times["completed"] - created) * 1000)
        embed_invocations = cloud.runtime("EmbedFunction").invocations
        analyze_invocations = cloud.runtime("AnalyzeFunction").invocations

    result = {
        "memories": args.memories,
        "ready": ready,
        "create_p50_ms": statistics.median(latencies),
        "create_p95_ms": pct(latencies, 0.95),
        "create_rps": args.memories / created_s,
        "throughput_memories_per_s": args.memories / total_s,
        "wall_s": total_s,
        "embed_calls_per_memory": embed_invocations / args.memories,
        "analyze_invocations": analyze_invocations,
        "stage_p50_ms": {k: statistics.median(v) for k, v in stages.items()},
        "stage_p95_ms": {k: pct(v, 0.95) for k, v in stages.items()},
        "note": "local cloud on moto (≈7 ms per DynamoDB call), offline analyzer, hash embedder",
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
