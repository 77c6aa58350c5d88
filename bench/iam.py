"""What the local cloud's IAM enforcement costs per AWS call.

Starts the local cloud on template.yaml (moto in process, no HTTP server, no pumps) and times
the same DynamoDB GetItem and SQS GetQueueAttributes calls outside any function (not checked)
and as RetrievalFunction / AdminFunction (checked against their roles), interleaved in rounds
so both see the same machine load. Also times the policy check alone.

    python -m bench.iam [--calls 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.localcloud import LocalCloud
from infra.localcloud.iam import acting_as, check_call

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "iam.json"


def _per_call_us(fn: Callable[[], Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    env = {"SUPABASE_JWT_SECRET": "bench-secret", "LOG_LEVEL": "WARNING"}
    with LocalCloud(
        ROOT / "template.yaml", serve_http=False, pumps=False, schedules=False, env_overrides=env
    ) as cloud:
        dynamodb, sqs = cloud.boto3_client("dynamodb"), cloud.boto3_client("sqs")
        table, queue = cloud.table_name("Table"), cloud.queue_url("AnalyzeQueue")
        get = {"TableName": table, "Key": {"PK": {"S": "bench"}, "SK": {"S": "bench"}}}
        attrs = {"QueueUrl": queue, "AttributeNames": ["All"]}
        cases = {
            "dynamodb GetItem": (
                cloud.roles["RetrievalFunction"],
                lambda: dynamodb.get_item(**get),
            ),
            "sqs GetQueueAttributes": (
                cloud.roles["AdminFunction"],
                lambda: sqs.get_queue_attributes(**attrs),
            ),
        }
        results: dict[str, Any] = {}
        for name, (role, call) in cases.items():
            call()  # warm the connection
            plain, checked = [], []
            for _ in range(args.rounds):
                plain.append(_per_call_us(call, args.calls))
                with acting_as(role):
                    checked.append(_per_call_us(call, args.calls))
            results[name] = {
                "unchecked_us": round(statistics.median(plain), 1),
                "checked_us": round(statistics.median(checked), 1),
                "added_us": round(statistics.median(checked) - statistics.median(plain), 1),
            }
        role = cloud.roles["RetrievalFunction"]
        with acting_as(role):
            check_us = _per_call_us(lambda: check_call(dynamodb, "GetItem", get), 20_000)
        arn = cloud.stack.resolver.arn("Table")  # type: ignore[union-attr]
        uncached_us = _per_call_us(
            lambda: type(role).allows.__wrapped__(role, "dynamodb:GetItem", arn), 20_000
        )
        results["policy check alone (GetItem)"] = {
            "cached_us": round(check_us, 2),
            "uncached_evaluation_us": round(uncached_us, 2),
        }
    print(json.dumps(results, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
