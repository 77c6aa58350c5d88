"""AWS calls per memory, by function, service and operation, through the local cloud.

Runs the local cloud in this process (as `make dev` does: the template, IAM enforced, offline
analyzer, hash embedder), counts every botocore call with a `before-call` event hook (each call
is attributed to the function whose role it runs with; the SQS pollers' receives and deletes
run with their function's role too, as Lambda's poller does, and are counted by the local
cloud's `PollerQueue`, which makes them on moto's backend without botocore), creates N
memories for one user over HTTP with C concurrent clients, waits until the analyze and embed
queues are empty, and reports calls per memory and this process's CPU per memory (user +
system; the HTTP clients are in it too, a small share).

    python -m bench.calls [--memories 200] [--concurrency 8] [--websocket]
                          [--backend dynamodb|supabase]

`--websocket` keeps a WebSocket connection of the user open while it runs (the extension
listening for progress), and counts the progress messages it receives. `--backend supabase`
runs the functions on an embedded Postgres (as `STORAGE_BACKEND=supabase make dev`) and also
counts its committed transactions per memory (`pg_stat_database`, read once the server has
published every backend's counts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.ingest import SECRET, USER, content, overrides

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "calls.json"


class CallCounter:
    """Counts botocore calls by (function, service, operation); installed as a built-in
    handler, so every client created after `install` reports to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[tuple[str, str, str]] = Counter()

    def install(self) -> None:
        import botocore.handlers

        botocore.handlers.BUILTIN_HANDLERS.append(("before-call", self._count))

    def _count(self, model: Any, **_: Any) -> None:
        from infra.localcloud.iam import current_role

        role = current_role.get()
        key = (
            role.function if role else "(local cloud)",
            model.service_model.service_name,
            model.name,
        )
        with self._lock:
            self.calls[key] += 1

    def snapshot(self) -> Counter[tuple[str, str, str]]:
        with self._lock:
            return Counter(self.calls)


def poller_calls(cloud: Any) -> Counter[tuple[str, str, str]]:
    """The SQS pollers' requests (the local cloud makes them on moto's backend directly, not
    through botocore), by the function whose role they run with."""
    calls: Counter[tuple[str, str, str]] = Counter()
    for pump in cloud.pumps:
        for operation, n in pump.queue.calls.items():
            calls[(pump.source.function, "sqs", operation)] += n
    return calls


def per_memory(calls: Counter[tuple[str, str, str]], memories: int) -> dict[str, Any]:
    by_operation: Counter[str] = Counter()
    by_function: dict[str, dict[str, float]] = {}
    for (function, service, operation), n in sorted(calls.items()):
        by_operation[f"{service}.{operation}"] += n
        by_function.setdefault(function, {})[f"{service}.{operation}"] = round(n / memories, 2)
    by_service: Counter[str] = Counter()
    for name, n in by_operation.items():
        by_service[name.split(".")[0]] += n
    return {
        "total": round(sum(calls.values()) / memories, 2),
        "by_service": {k: round(v / memories, 2) for k, v in sorted(by_service.items())},
        "by_operation": {k: round(v / memories, 2) for k, v in sorted(by_operation.items())},
        "by_function": by_function,
    }


def committed_transactions(url: str) -> int:
    """The database's committed transactions so far. Backends publish their counts when idle
    (at most every 10 s in Postgres ≥ 15), so this waits that long first."""
    import asyncpg

    async def read() -> int:
        conn = await asyncpg.connect(url, statement_cache_size=0)
        try:
            value: int = await conn.fetchval(
                "select xact_commit from pg_stat_database where datname = current_database()"
            )
        finally:
            await conn.close()
        return value

    time.sleep(11)
    return asyncio.run(read())


def run(memories: int, concurrency: int, websocket: bool, backend: str) -> dict[str, Any]:
    from infra.localcloud import LocalCloud
    from infra.supabase.embedded import dev_database

    counter = CallCounter()
    counter.install()
    env: dict[str, str | None] = {
        **overrides(backend, "hash"),
        "SUPABASE_JWT_SECRET": SECRET,
        "SUPABASE_JWKS_URL": None,
    }
    received: list[dict[str, Any]] = []
    transactions = None
    with ExitStack() as stack:
        state = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        database_url = stack.enter_context(dev_database(state, env))
        cloud = stack.enter_context(LocalCloud(ROOT / "template.yaml", port=0, env_overrides=env))
        # memlayer is imported only now: its settings and logger read the cloud's environment.
        from memlayer.auth.jwt import mint_dev_token

        token = mint_dev_token(SECRET, USER)
        http = httpx.Client(
            base_url=cloud.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
            limits=httpx.Limits(max_connections=concurrency + 4),
        )

        def create(i: int) -> None:
            response = http.post("/v1/memories", json={"content": content(i)})
            assert response.status_code == 201, response.text

        # Warm up: the functions' imports, clients and first secret reads are not per memory.
        create(-1)
        cloud.drain(timeout=60)
        listener = None
        stop = threading.Event()
        if websocket:
            from websockets.sync.client import connect

            socket = connect(f"{cloud.ws_url}?token={token}", open_timeout=10)

            def listen() -> None:
                while not stop.is_set():
                    try:
                        received.append(json.loads(socket.recv(timeout=0.2)))
                    except TimeoutError:
                        continue

            listener = threading.Thread(target=listen, daemon=True)
            listener.start()
            time.sleep(0.2)
        before = counter.snapshot() + poller_calls(cloud)
        committed = committed_transactions(database_url) if database_url else 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(create, range(memories)))
        cloud.drain(timeout=600)
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
        calls = counter.snapshot() + poller_calls(cloud) - before
        if database_url:
            # less the first count's own, published when its connection closed
            transactions = committed_transactions(database_url) - committed - 1
        if listener is not None:
            time.sleep(0.5)
            stop.set()
            listener.join()
            socket.close()
        page = http.get("/v1/memories", params={"limit": 1, "status": "ready"})
        page.raise_for_status()
        http.close()
    statuses = Counter(m["status"] for m in received)
    return {
        "memories": memories,
        "concurrency": concurrency,
        "websocket": websocket,
        "backend": backend,
        "calls_per_memory": per_memory(calls, memories),
        "postgres_transactions_per_memory": (
            round(transactions / memories, 2) if transactions is not None else None
        ),
        "cpu_ms_per_memory": round(cpu_s * 1000 / memories, 1),
        "wall_s": round(wall_s, 2),
        "memories_per_s": round(memories / wall_s, 2),
        "progress_messages_received": dict(statuses) if websocket else None,
        "note": "the local cloud in this process (IAM on), offline analyzer, hash embedder, one "
        "user; CPU is this whole process's (local cloud, functions, moto, HTTP clients); the "
        "first memory (warm-up) is not counted",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memories", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--websocket", action="store_true")
    parser.add_argument("--backend", choices=["dynamodb", "supabase"], default="dynamodb")
    parser.add_argument("--label", default=None, help="key in bench/results/calls.json")
    args = parser.parse_args()
    result = run(args.memories, args.concurrency, args.websocket, args.backend)
    label = args.label or (
        f"{args.memories}{' websocket' if args.websocket else ''}"
        f"{' ' + args.backend if args.backend != 'dynamodb' else ''}"
    )
    recorded = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    recorded[label] = result
    RESULTS.write_text(json.dumps(recorded, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
