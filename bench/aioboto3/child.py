"""Runs in the bench's own environment (bench/aioboto3/requirements.txt), one measurement per
process, and prints one JSON line. Standalone: it imports nothing of the project.

    cold <boto3|aioboto3>                 init (imports + client) and the first request of a
                                          bare FastAPI + Mangum app that reads one item
    hop <boto3|aioboto3> <concurrency> <records>
                                          worker records (GetItem then PutItem each) through
                                          one client, `concurrency` at a time

boto3 runs as the project runs it (memlayer/storage/dynamo_base.py): each call in
`asyncio.to_thread`, on the default executor. aioboto3 awaits the call on the event loop. Both
clients get the project's client config (memlayer/aws.py). Endpoint: MOTO_ENDPOINT."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

ENDPOINT = os.environ["MOTO_ENDPOINT"]
TABLE = os.environ.get("BENCH_TABLE", "bench")
KEY = {"PK": {"S": "USER#bench"}, "SK": {"S": "MEM#0"}}


def _config() -> Any:
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=2,
        read_timeout=10,
        max_pool_connections=32,
    )


def cold(client_kind: str) -> dict[str, Any]:
    started, started_cpu = time.perf_counter(), time.process_time()
    from fastapi import FastAPI
    from mangum import Mangum

    # The container's event loop (memlayer/runloop.py keeps one per thread); an aioboto3
    # client is bound to it.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = FastAPI()
    if client_kind == "boto3":
        import boto3

        client = boto3.session.Session().client("dynamodb", endpoint_url=ENDPOINT, config=_config())

        @app.get("/item")
        async def item_boto3() -> dict[str, bool]:
            resp = await asyncio.to_thread(
                client.get_item, TableName=TABLE, Key=KEY, ConsistentRead=True
            )
            return {"found": "Item" in resp}
    else:
        import aioboto3

        client = loop.run_until_complete(
            aioboto3.Session()
            .client("dynamodb", endpoint_url=ENDPOINT, config=_config())
            .__aenter__()
        )

        @app.get("/item")
        async def item_aioboto3() -> dict[str, bool]:
            resp = await client.get_item(TableName=TABLE, Key=KEY, ConsistentRead=True)
            return {"found": "Item" in resp}

    handler = Mangum(app, lifespan="off")
    init_ms = (time.perf_counter() - started) * 1000
    init_cpu_ms = (time.process_time() - started_cpu) * 1000
    event = {
        "version": "2.0",
        "routeKey": "GET /item",
        "rawPath": "/item",
        "rawQueryString": "",
        "headers": {"host": "bench"},
        "requestContext": {
            "http": {"method": "GET", "path": "/item", "protocol": "HTTP/1.1", "sourceIp": "1"},
            "requestId": "bench",
            "routeKey": "GET /item",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    t0, c0 = time.perf_counter(), time.process_time()
    response = handler(event, None)
    first_ms = (time.perf_counter() - t0) * 1000
    first_cpu_ms = (time.process_time() - c0) * 1000
    assert json.loads(response["body"]) == {"found": True}, response
    return {
        "init_ms": init_ms,
        "init_cpu_ms": init_cpu_ms,
        "first_request_ms": first_ms,
        "first_request_cpu_ms": first_cpu_ms,
    }


async def _records(call: Any, concurrency: int, records: int) -> None:
    pending = iter(range(records))

    async def lane() -> None:
        for n in pending:
            key = {"PK": {"S": "USER#bench"}, "SK": {"S": f"MEM#{n % 500}"}}
            await call("get_item", TableName=TABLE, Key=key, ConsistentRead=True)
            item = {**key, "n": {"N": str(n)}, "status": {"S": "ready"}}
            await call("put_item", TableName=TABLE, Item=item)

    await asyncio.gather(*(lane() for _ in range(concurrency)))


async def _hop(client_kind: str, concurrency: int, records: int) -> dict[str, Any]:
    if client_kind == "boto3":
        import boto3

        client = boto3.session.Session().client("dynamodb", endpoint_url=ENDPOINT, config=_config())

        async def call(op: str, **kwargs: Any) -> Any:
            return await asyncio.to_thread(getattr(client, op), **kwargs)

        await _records(call, concurrency, 20)  # warm: credentials, endpoint, connections
        t0, c0 = time.perf_counter(), time.process_time()
        await _records(call, concurrency, records)
    else:
        import aioboto3

        async with aioboto3.Session().client(
            "dynamodb", endpoint_url=ENDPOINT, config=_config()
        ) as client:

            async def call(op: str, **kwargs: Any) -> Any:
                return await getattr(client, op)(**kwargs)

            await _records(call, concurrency, 20)
            t0, c0 = time.perf_counter(), time.process_time()
            await _records(call, concurrency, records)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {
        "records_per_s": records / seconds,
        "client_cpu_ms_per_record": cpu * 1000 / records,
    }


def main() -> None:
    mode, client_kind, *rest = sys.argv[1:]
    if mode == "cold":
        result = cold(client_kind)
    else:
        result = asyncio.run(_hop(client_kind, int(rest[0]), int(rest[1])))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
