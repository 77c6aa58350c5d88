"""What a search container's first search of a user costs: loading the user's index cold.

Under in-process moto (the template's table and bucket): one user with N memories that are
chat turns (bench/retrieval/latency.py's corpus), written straight into the table, `ready`,
with hash-embedder vectors. Each figure is one cold `InMemorySearch.user_index` (the warm
cache emptied first, as in a new container), median of `--repeats`:

- `table`: no snapshot: every memory and vector item is read from the table, decoded and
  indexed (what every cold container did before snapshots, and still does when the snapshot
  is missing or unusable); it then writes the snapshot;
- `snapshot`: the snapshot is current (nothing written since);
- `snapshot + catch-up`: `--edits` memories were edited after the snapshot was written, so
  the snapshot is loaded and then caught up from the change log.

CPU is the process's (all threads); wall includes waiting for a core on this shared machine
(the load average is recorded). Requests are counted per service and operation. `--stages`
also times the table load's steps one after another (the breakdown in the README).

    python -m bench.retrieval.coldload [--memories 1000 10000] [--repeats 3] [--stages]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "coldload.json"
USER = "bench-coldload-user"
BUCKET = "bench-uploads"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--stages", action="store_true")
    parser.add_argument(
        "--localcloud",
        action="store_true",
        help="also time the first POST /v1/search through the local cloud (make dev's stack)",
    )
    parser.add_argument(
        "--only-localcloud", action="store_true", help="skip the in-process measurements"
    )
    parser.add_argument("--label", default="")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    from bench.inprocess import in_process_aws

    runs = []
    for n in args.memories:
        run: dict[str, Any] = {"memories": n}
        if not args.only_localcloud:
            with in_process_aws(DEFAULT_MAX_MEMORIES="0", UPLOADS_BUCKET=BUCKET):
                run = asyncio.run(_measure(n, args.repeats, args.edits, args.stages))
        if args.localcloud or args.only_localcloud:
            run["through the local cloud"] = _through_localcloud(n)
        runs.append(run)
    import memlayer

    out = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "label": args.label,
        "code": str(Path(memlayer.__file__).resolve().parents[3]),
        "runs": runs,
    }
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


class Requests:
    """Counts every boto3 request by service and operation, with response bytes."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.bytes = 0

    def watch(self, client: Any) -> None:
        client.meta.events.register("before-call", self._call)
        client.meta.events.register("before-parse", self._parse)

    def _call(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def _parse(self, response_dict: dict[str, Any], **_: Any) -> None:
        body = response_dict.get("body")
        self.bytes += len(body) if isinstance(body, bytes | str) else 0

    def take(self) -> dict[str, Any]:
        taken = {"requests": dict(sorted(self.calls.items())), "response_bytes": self.bytes}
        self.calls.clear()
        self.bytes = 0
        return taken


def _reset_clients() -> None:
    """Settings, clients and the store are built once per process; each run's AWS differs."""
    from memlayer import aws, secrets
    from memlayer.observability import get_metrics
    from memlayer.settings import get_settings
    from memlayer.storage import get_search_index, get_store

    for cached in (get_settings, get_metrics, get_store, get_search_index, aws.client):
        cached.cache_clear()
    secrets._provider.cache_clear()  # its client points at the previous run's endpoint


def _forget() -> None:
    from memlayer.storage import dynamo_search

    for cached in dynamo_search._cache.values():
        cached.index.close()
    dynamo_search._cache.clear()


async def _cold_load(index: Any, requests: Requests, repeats: int, before: Any) -> dict[str, Any]:
    walls, cpus, seen = [], [], {}
    for _ in range(repeats):
        await before()
        _forget()
        requests.take()
        load = os.getloadavg()[0]
        c0, t0 = time.process_time(), time.perf_counter()
        cached = await index.user_index(USER)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        seen = {**requests.take(), "memories": len(cached.records), "load_average_1m": load}
    return {
        "wall_s": round(statistics.median(walls), 3),
        "cpu_s": round(statistics.median(cpus), 3),
        "wall_runs_s": [round(w, 3) for w in walls],
        "cpu_runs_s": [round(c, 3) for c in cpus],
        **seen,
    }


async def _stages(store: Any, dims: int) -> dict[str, float]:
    """The table load's steps, timed one after another in this thread (CPU seconds)."""
    import numpy as np

    from memlayer.search import UserIndex
    from memlayer.storage import dynamo_search

    took: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        c0 = time.process_time()
        out = fn()
        took[name] = round(time.process_time() - c0, 3)
        return out

    # as the tree under test reads them (projected and decoded in one call, where it does)
    current = "attributes" in inspect.signature(store._query_all).parameters
    mem_only = {"attributes": ("data",)} if current else {}
    mem = timed(
        "query MEM# items (moto + botocore)", lambda: store._query_all(USER, "MEM#", **mem_only)
    )
    vec = timed("query VEC# items (moto + botocore)", lambda: store._query_all(USER, "VEC#"))
    if current:
        from memlayer.storage.dynamo import _RECORDS

        joined = f"[{','.join(item['data']['S'] for item in mem)}]"
        records = timed("decode records", lambda: _RECORDS.validate_json(joined))
    else:
        records = timed("decode records", lambda: [store._memory_of(i) for i in mem])
    stored = timed("decode vectors", lambda: {v.memory_id: v for v in map(store._vector_of, vec)})
    docs = timed(
        "IndexedDoc per memory (search fields, float32 vector)",
        lambda: [
            dynamo_search._doc(
                r,
                None
                if (v := stored.get(r.id)) is None
                else np.frombuffer(v.vector, "<f2").astype(np.float32),
            )
            for r in records
        ],
    )
    timed(
        "UserIndex.build (tokenize, postings, int8 codes)",
        lambda: UserIndex.build(docs, dims),
    )
    return took


async def _measure(n: int, repeats: int, edits: int, stages: bool) -> dict[str, Any]:
    import boto3

    from bench.inprocess import write_ready_memories
    from bench.retrieval.latency import _turns
    from memlayer import aws
    from memlayer.ai.embeddings import get_embedder
    from memlayer.api.memories import MemoryPatch
    from memlayer.services import memories
    from memlayer.settings import get_settings
    from memlayer.storage import get_search_index, get_store

    _reset_clients()
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    records = [r.model_copy(update={"user_id": USER}) for r in _turns(n)[0]]
    t0 = time.perf_counter()
    records = await write_ready_memories(USER, records)
    seeded = time.perf_counter() - t0
    index: Any = get_search_index()
    requests = Requests()
    for service in ("dynamodb", "s3"):
        requests.watch(aws.client(service))
    snapshots = _snapshot_module()
    s3 = aws.client("s3")

    async def no_snapshot() -> None:
        if snapshots is not None:
            s3.delete_object(Bucket=BUCKET, Key=f"index/{USER}/snapshot")

    async def keep() -> None:
        return None

    result: dict[str, Any] = {
        "memories": n,
        "seed_seconds": round(seeded, 1),
        "table": await _cold_load(index, requests, repeats, no_snapshot),
    }
    if snapshots is not None:
        head = s3.head_object(Bucket=BUCKET, Key=f"index/{USER}/snapshot")
        result["snapshot_bytes"] = int(head["ContentLength"])
        result["snapshot"] = await _cold_load(index, requests, repeats, keep)
        ids = [r.id for r in records]
        edited = {"n": 0}

        async def edit() -> None:
            # each repeat starts from a snapshot `edits` writes behind
            await index.user_index(USER)  # warm: writes a current snapshot if it lags
            await snapshots_rewrite(index)
            for i in range(edits):
                memory_id = ids[(edited["n"] + i) % len(ids)]
                await memories.patch(
                    USER, memory_id, MemoryPatch(content=f"edited {i}"), if_match=None
                )
            edited["n"] += edits

        result[f"snapshot + catch-up of {edits} edits"] = await _cold_load(
            index, requests, repeats, edit
        )
    if stages:
        embedder = get_embedder(get_settings())
        result["table_stages_cpu_s"] = await _stages(get_store(), embedder.dimensions)
    return result


def _through_localcloud(n: int) -> dict[str, Any]:
    """The first `POST /v1/search` of the user through the local cloud (IAM enforced, the
    HTTP API's 30 s limit), once with no snapshot (as after a restart before this change, or
    for a user who never searched) and once from the snapshot that search wrote (a new
    container, or the next `make dev`). CPU is the whole process's: the local cloud, moto and
    the retrieval function share it."""
    import httpx

    from bench.inprocess import write_ready_memories
    from bench.retrieval.latency import _turns
    from infra.localcloud import LocalCloud
    from memlayer.auth.jwt import mint_dev_token

    secret = "bench-coldload-secret-0123456789abcdef"
    env: dict[str, str | None] = {
        "SUPABASE_JWT_SECRET": secret,
        "SUPABASE_JWKS_URL": None,
        "EMBEDDINGS_PROVIDER": "hash",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_PER_IP_PER_MIN": "0",
        "RATE_LIMIT_PER_USER_PER_MIN": "0",
    }
    user = f"{USER}-lc"
    records = [r.model_copy(update={"user_id": user}) for r in _turns(n)[0]]
    out: dict[str, Any] = {}
    with LocalCloud(ROOT / "template.yaml", port=0, env_overrides=env, schedules=False) as cloud:
        _reset_clients()
        asyncio.run(write_ready_memories(user, records))
        token = mint_dev_token(secret, user)
        s3 = cloud.boto3_client("s3")
        bucket = cloud.bucket_name("UploadsBucket")
        for case in ("no snapshot", "from the snapshot"):
            if case == "no snapshot":
                s3.delete_object(Bucket=bucket, Key=f"index/{user}/snapshot")
            _forget()
            load = os.getloadavg()[0]
            c0, t0 = time.process_time(), time.perf_counter()
            resp = httpx.post(
                f"{cloud.base_url}/v1/search",
                json={"query": "what did we say about the weather"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=120,
            )
            out[case] = {
                "status": resp.status_code,
                "wall_s": round(time.perf_counter() - t0, 3),
                "cpu_s": round(time.process_time() - c0, 3),
                "hits": len(resp.json().get("items", [])) if resp.is_success else 0,
                "load_average_1m": load,
            }
            # past the HTTP API's 30 s the function still runs on (as on Lambda, to its
            # timeout): its load ends when it has written the snapshot
            deadline = time.perf_counter() + 600
            while time.perf_counter() < deadline:
                try:
                    s3.head_object(Bucket=bucket, Key=f"index/{user}/snapshot")
                    break
                except s3.exceptions.ClientError:
                    time.sleep(0.5)
            out[case]["snapshot_written_after_s"] = round(time.perf_counter() - t0, 1)
            out[case]["cpu_until_then_s"] = round(time.process_time() - c0, 3)
    _reset_clients()
    return out


def _snapshot_module() -> Any:
    try:
        from memlayer.storage import index_snapshot
    except ImportError:  # a tree from before snapshots (the "before" figures)
        return None
    return index_snapshot


async def snapshots_rewrite(index: Any) -> None:
    """Writes the warm index's current state as the snapshot."""
    from memlayer.storage import dynamo_search

    await index._persist(dynamo_search._cache[USER])


if __name__ == "__main__":
    raise SystemExit(main())
