"""aioboto3 against boto3-in-threads for the data-access hop (issue 12, item 8).

Both clients are measured in one environment of their own (bench/aioboto3/requirements.txt,
built into .venv/bench-aioboto3 on first run: aioboto3 pins a botocore the project cannot use),
against a moto server in its own process (the same moto the local cloud runs; the local cloud
itself serves boto3 in the calling thread, which aiobotocore's aiohttp transport cannot use).

- Cold start: the coldstart bench's bare app (FastAPI + Mangum + a DynamoDB client), its init
  and its first request (one GetItem), with boto3 (`asyncio.to_thread`) or aioboto3 (awaited
  on the container's loop). Fresh interpreter per run.
- Hop: worker records (GetItem + PutItem each) through one client, 1, 8 or 32 at a time,
  straight to moto and through a proxy adding 5 ms to every request (a Lambda's round trip
  to DynamoDB in its region is a few ms; on loopback moto's own CPU is the whole latency).

    python -m bench.aioboto3.run [--runs 5] [--records 400]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VENV = ROOT / ".venv" / "bench-aioboto3"
RESULTS = ROOT / "bench" / "results" / "aioboto3.json"
CLIENTS = ("boto3", "aioboto3")
ADDED_LATENCY_S = 0.005
ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "BENCH_TABLE": "bench",
}


def _python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        venv.create(VENV, with_pip=True)
        requirements = str(HERE / "requirements.txt")
        pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", requirements], check=True)
    return python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _moto() -> Iterator[str]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        _seed(endpoint)
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)


def _seed(endpoint: str) -> None:
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"],
    )
    dynamodb.create_table(
        TableName=ENV["BENCH_TABLE"],
        KeySchema=[
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(500):
        dynamodb.put_item(
            TableName=ENV["BENCH_TABLE"],
            Item={"PK": {"S": "USER#bench"}, "SK": {"S": f"MEM#{n}"}, "n": {"N": str(n)}},
        )


@contextlib.contextmanager
def _delayed(endpoint: str, delay: float) -> Iterator[str]:
    """A TCP proxy to `endpoint` that holds every request `delay` seconds before passing it on
    (on a thread of its own)."""
    upstream_port = int(endpoint.rsplit(":", 1)[1])
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, wait: float) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if wait:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(pipe(reader, up_writer, delay), pipe(up_reader, writer, 0))

    async def start() -> None:
        holder["server"] = await asyncio.start_server(serve, "127.0.0.1", 0)
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    started.wait(10)
    port = holder["server"].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(holder["server"].close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _child(python: Path, endpoint: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [python, str(HERE / "child.py"), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **ENV, "MOTO_ENDPOINT": endpoint},
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _median(samples: list[dict[str, Any]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--records", type=int, default=400)
    args = parser.parse_args()
    python = _python()
    results: dict[str, Any] = {"cold": {}, "hop": {}}
    with _moto() as endpoint:
        cold: dict[str, list[dict[str, Any]]] = {client: [] for client in CLIENTS}
        for _ in range(args.runs):  # interleaved, so drift on a shared machine hits both
            for client in CLIENTS:
                cold[client].append(_child(python, endpoint, "cold", client))
        print(
            f"{'cold start':<10} {'init ms':>8} {'init cpu':>9} {'1st req ms':>11} {'1st cpu':>8}"
        )
        for client in CLIENTS:
            r = results["cold"][client] = _median(cold[client])
            print(
                f"{client:<10} {r['init_ms']:>8.0f} {r['init_cpu_ms']:>9.0f}"
                f" {r['first_request_ms']:>11.1f} {r['first_request_cpu_ms']:>8.1f}"
            )
        print(f"\n{'hop':<22} {'records/s':>10} {'client cpu ms/record':>21}")
        with _delayed(endpoint, ADDED_LATENCY_S) as slow:
            for label, url, records in (
                ("loopback", endpoint, args.records),
                ("+5 ms", slow, args.records // 2),
            ):
                for concurrency in (1, 8, 32):
                    hop: dict[str, list[dict[str, Any]]] = {client: [] for client in CLIENTS}
                    for _ in range(3):
                        for client in CLIENTS:
                            hop[client].append(
                                _child(python, url, "hop", client, str(concurrency), str(records))
                            )
                    for client in CLIENTS:
                        r = _median(hop[client])
                        results["hop"][f"{label} x{concurrency} {client}"] = r
                        name = f"{label} x{concurrency} {client}"
                        print(
                            f"{name:<22} {r['records_per_s']:>10.0f}"
                            f" {r['client_cpu_ms_per_record']:>21.2f}"
                        )
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
