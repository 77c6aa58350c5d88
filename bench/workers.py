"""Worker throughput in one container, without the local cloud's HTTP and pump overhead.

Under in-process moto: N memories are created through the service (written, then enqueued),
then the real analyze and embed handlers are invoked on SQS events built from the queued
messages, with the template's batch sizes. Reports memories/s per worker, per-batch handler
time, and embeddings calls per memory. Offline analyzer, hash embedder.

    python -m bench.workers [--memories 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "workers.json"
TOPICS = ["kubernetes", "sourdough", "tax return", "marathon", "rust lifetimes", "lisbon trip"]


def _drain(sqs: Any, url: str, arn: str, size: int) -> list[dict[str, Any]]:
    """Receives up to `size` messages as one SQS Lambda event."""
    records: list[dict[str, Any]] = []
    while len(records) < size:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, size - len(records)))
        messages = got.get("Messages", [])
        if not messages:
            break
        for m in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            records.append(
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": "us-east-1",
                }
            )
    return records


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memories", type=int, default=500)
    args = parser.parse_args()
    from bench.inprocess import function_handler, in_process_aws

    with in_process_aws() as (stack, queue_urls):
        import boto3

        sqs = boto3.client("sqs")
        urls = {"a": queue_urls["analyze"], "e": queue_urls["embed"]}
        from memlayer import aws

        calls = {"n": 0}  # DynamoDB requests: the hardware-independent cost of each stage

        def counted(**_: Any) -> None:
            calls["n"] += 1

        aws.client("dynamodb").meta.events.register("before-call.dynamodb", counted)
        from memlayer.services import memories

        async def seed() -> None:
            for i in range(args.memories):
                body = f"Note {i} about {TOPICS[i % len(TOPICS)]}: " + "details " * 40
                await memories.create("bench-user", memories.Draft(content=body))

        asyncio.run(seed())
        sizes = {s.function: s.batch_size for s in stack.sqs_sources}
        timings: dict[str, list[float]] = {"analyze": [], "embed": []}
        per_memory: dict[str, float] = {}
        stages = (("analyze", "a", "AnalyzeFunction"), ("embed", "e", "EmbedFunction"))
        for stage, queue, fn in stages:
            handler = function_handler(stage)
            calls["n"] = 0
            arn = f"arn:aws:sqs:us-east-1:123456789012:{queue}"
            started = time.perf_counter()
            while records := _drain(sqs, urls[queue], arn, sizes[fn]):
                t0 = time.perf_counter()
                result = handler({"Records": records})
                timings[stage].append((time.perf_counter() - t0) * 1000)
                assert result == {"batchItemFailures": []}, result
            timings[f"{stage}_wall_s"] = [time.perf_counter() - started]
            per_memory[stage] = calls["n"] / args.memories

        from memlayer.storage import get_store

        records = asyncio.run(get_store().all_memories("bench-user"))
    n = args.memories
    result = {
        "memories": n,
        "ready": sum(1 for r in records if r.status == "ready"),
        "analyze_batch_size": sizes["AnalyzeFunction"],
        "embed_batch_size": sizes["EmbedFunction"],
        "analyze_memories_per_s": n / timings["analyze_wall_s"][0],
        "embed_memories_per_s": n / timings["embed_wall_s"][0],
        "both_workers_memories_per_s": n
        / (timings["analyze_wall_s"][0] + timings["embed_wall_s"][0]),
        "analyze_batch_p50_ms": statistics.median(timings["analyze"]),
        "embed_batch_p50_ms": statistics.median(timings["embed"]),
        "dynamodb_calls_per_memory": per_memory,
        "embeddings_calls_per_memory": len(timings["embed"]) / n,
        "note": "one container, in-process moto (~5 ms per DynamoDB call), offline providers",
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
