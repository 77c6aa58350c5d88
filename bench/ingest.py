"""Ingest at scale through `make dev`'s local cloud: one user, N memories, end to end.

Starts the real `python -m infra.localcloud serve` as a subprocess (offline analyzer, hash
embedder, its own temporary state directory), creates memories over HTTP with C concurrent
clients in rounds of `--round` (default 1,000), and after each round waits until the
analyze and embed queues are empty. Per round it records the wall time (create → analyze →
embed → ready), POST /v1/memories p50/p95, and the RSS of the serve process tree. At the end
it checks every memory is `ready` through the list API and reads moto's DynamoDB handler
times (per action) from the stats file the serve process writes when it stops.

The product's defaults cap one user (DEFAULT_DAILY_WRITES=100, RATE_LIMIT_PER_USER_PER_MIN=300,
DEFAULT_MAX_MEMORIES=10,000); the bench lifts them with the local cloud's `--env` (0 disables
the first two).

    python -m bench.ingest [--memories 1000] [--concurrency 8] [--round 1000]
                           [--backend dynamodb|supabase] [--processes none|workers|all]
                           [--embeddings hash|e5|local] [--label TEXT]

`--processes` is serve's (which functions run in processes of their own; default: serve's
default, the SQS workers). CPU is recorded for the whole serve process tree (function
processes included), for the serve process alone, with `--backend supabase` for the embedded
Postgres (its server and backends: a daemon outside serve's tree), and for the bench's own
clients (this process: they share the machine's cores), with the load average, since the
machine is shared and wall-clock rates follow its load. `--label`
records the run under its own key in the results file.

With `--backend supabase` the local cloud runs on an embedded Postgres kept in its state
directory (as `STORAGE_BACKEND=supabase make dev`), and the restart reads it back from there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "ingest.json"
SECRET = "bench-secret-bench-secret-bench-secret"
USER = "bench-ingest-user"
TOPICS = ["kubernetes", "sourdough", "tax return", "marathon", "rust lifetimes", "lisbon trip"]
WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
]
ENV_OVERRIDES = {
    "ANTHROPIC_API_KEY": "",
    "OPENAI_API_KEY": "",
    "LOG_LEVEL": "WARNING",
    "DEFAULT_DAILY_WRITES": "0",
    "RATE_LIMIT_PER_USER_PER_MIN": "0",
    "RATE_LIMIT_PER_IP_PER_MIN": "0",
    "DEFAULT_MAX_MEMORIES": "1000000",
}
WORK_QUEUES = ("AnalyzeQueue", "EmbedQueue")


def overrides(backend: str, embeddings: str) -> dict[str, str]:
    return {**ENV_OVERRIDES, "EMBEDDINGS_PROVIDER": embeddings, "STORAGE_BACKEND": backend}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def tree(pid: int) -> list[int]:
    """A process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def tree_rss_mb(pid: int) -> float:
    total_kb = 0
    for member in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process tree so far."""
    return sum(process_cpu_s(member) for member in tree(pid))


def postmaster_pid(state_dir: Path) -> int | None:
    """The embedded Postgres server's pid (STORAGE_BACKEND=supabase), from its pid file."""
    try:
        return int((state_dir / "postgres" / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def content(i: int) -> str:
    words = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(30))
    return f"Note {i} about {TOPICS[i % len(TOPICS)]}: {words}. Reference {i * 7919 % 100003}."


class Serve:
    """`python -m infra.localcloud serve` in a subprocess, as `make dev` runs it."""

    def __init__(
        self,
        state_dir: Path,
        stats_file: Path,
        backend: str,
        processes: str | None,
        embeddings: str,
    ) -> None:
        command = [sys.executable, "-m", "infra.localcloud", "serve", "--port", "0", "--json"]
        command += ["--reload", "--state-dir", str(state_dir), "--dynamodb-stats", str(stats_file)]
        if processes:
            command += ["--processes", processes]
        for name, value in overrides(backend, embeddings).items():
            command += ["--env", f"{name}={value}"]
        env = {**os.environ, "SUPABASE_JWT_SECRET": SECRET}
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the local cloud exited before it was up")
        self.info = json.loads(line)
        self.startup_s = time.perf_counter() - self.started
        # Keep draining stdout so the child never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def stop(self) -> float:
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        return time.perf_counter() - started


def get_json(http: httpx.Client, path: str, **params: Any) -> Any:
    """A GET, tried again when the connection drops: a pooled keep-alive connection the
    server closed as idle (uvicorn, after 5 s) can be reset just as it is reused."""
    for attempt in range(1, 4):
        try:
            response = http.get(path, params=params or None)
            break
        except httpx.TransportError:
            if attempt == 3:
                raise
            time.sleep(0.5)
    response.raise_for_status()
    return response.json()


def wait_drained(http: httpx.Client, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        counts = get_json(http, "/_local/queues")
        empty = all(sum(counts[q].values()) == 0 for q in WORK_QUEUES)
        quiet = quiet + 1 if empty else 0
        if quiet >= 2:
            return
        time.sleep(0.2)
    raise TimeoutError(f"queues not drained after {timeout} s")


def list_statuses(http: httpx.Client) -> dict[str, int]:
    statuses: dict[str, int] = {}
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = get_json(http, "/v1/memories", **params)
        for item in page["items"]:
            statuses[item["status"]] = statuses.get(item["status"], 0) + 1
        cursor = page.get("next_cursor")
        if not cursor:
            return statuses


def restarted(
    state_dir: Path,
    stats_file: Path,
    token: str,
    backend: str,
    processes: str | None,
    embeddings: str,
) -> dict[str, Any]:
    """Starts serve again on the saved state: how long it takes, and what is there."""
    serve = Serve(state_dir, stats_file, backend, processes, embeddings)
    try:
        with httpx.Client(
            base_url=serve.info["base_url"],
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        ) as http:
            statuses = list_statuses(http)
            # The first search cold-starts the retrieval function and loads the user's index;
            # past the HTTP API's 30 s it answers 503 while the load goes on, so it is asked
            # again (each attempt recorded).
            searches: list[dict[str, Any]] = []
            hits: list[str] = []
            for _ in range(5):
                t0 = time.perf_counter()
                response = http.post("/v1/search", json={"query": content(7), "limit": 5})
                ms = round((time.perf_counter() - t0) * 1000, 1)
                searches.append({"status": response.status_code, "ms": ms})
                if response.status_code == 200:
                    hits = [hit["memory"]["content"] for hit in response.json()["items"]]
                    break
    finally:
        stop_s = serve.stop()
    return {
        "startup_s": round(serve.startup_s, 2),
        "statuses": statuses,
        "first_search_ms": searches[0]["ms"],
        "searches": searches,
        "search_finds_the_memory": content(7) in hits,
        "sigterm_exit_s": round(stop_s, 2),
    }


def run(
    memories: int,
    concurrency: int,
    round_size: int,
    backend: str,
    processes: str | None,
    label: str | None,
    embeddings: str,
) -> dict[str, Any]:
    from memlayer.auth.jwt import mint_dev_token

    token = mint_dev_token(SECRET, USER)
    load_at_start = load_average()
    with tempfile.TemporaryDirectory(prefix="memlayer-ingest-") as tmp:
        stats_file = Path(tmp) / "dynamodb-stats.json"
        serve = Serve(Path(tmp) / "state", stats_file, backend, processes, embeddings)
        try:
            http = httpx.Client(
                base_url=serve.info["base_url"],
                headers={"Authorization": f"Bearer {token}"},
                timeout=120,
                limits=httpx.Limits(max_connections=concurrency + 4),
            )

            def create(i: int) -> float:
                t0 = time.perf_counter()
                response = http.post("/v1/memories", json={"content": content(i)})
                assert response.status_code == 201, response.text
                return (time.perf_counter() - t0) * 1000

            rounds: list[dict[str, Any]] = []
            all_latencies: list[float] = []
            cpu_total_s = serve_cpu_total_s = postgres_cpu_total_s = client_cpu_total_s = 0.0
            postgres = postmaster_pid(Path(tmp) / "state")
            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                for first in range(0, memories, round_size):
                    count = min(round_size, memories - first)
                    t0, cpu0 = time.perf_counter(), tree_cpu_s(serve.process.pid)
                    serve_cpu0 = process_cpu_s(serve.process.pid)
                    postgres_cpu0 = tree_cpu_s(postgres) if postgres else 0.0
                    client_cpu0 = time.process_time()
                    latencies = list(pool.map(create, range(first, first + count)))
                    created_s = time.perf_counter() - t0
                    wait_drained(http, timeout=600)
                    wall_s = time.perf_counter() - t0
                    cpu_s = tree_cpu_s(serve.process.pid) - cpu0
                    serve_cpu_s = process_cpu_s(serve.process.pid) - serve_cpu0
                    postgres_cpu_s = (tree_cpu_s(postgres) - postgres_cpu0) if postgres else 0.0
                    client_cpu_s = time.process_time() - client_cpu0
                    cpu_total_s += cpu_s
                    serve_cpu_total_s += serve_cpu_s
                    postgres_cpu_total_s += postgres_cpu_s
                    client_cpu_total_s += client_cpu_s
                    all_latencies += latencies
                    rounds.append(
                        {
                            "memories": f"{first + 1}-{first + count}",
                            "wall_s": round(wall_s, 2),
                            "memories_per_s": round(count / wall_s, 2),
                            "ms_per_memory": round(wall_s * 1000 / count, 2),
                            "cpu_ms_per_memory": round(cpu_s * 1000 / count, 1),
                            "serve_process_cpu_ms_per_memory": round(serve_cpu_s * 1000 / count, 1),
                            "postgres_cpu_ms_per_memory": round(postgres_cpu_s * 1000 / count, 1),
                            "client_cpu_ms_per_memory": round(client_cpu_s * 1000 / count, 1),
                            "load_average": load_average(),
                            "create_p50_ms": round(statistics.median(latencies), 1),
                            "create_p95_ms": round(pct(latencies, 0.95), 1),
                            "create_phase_s": round(created_s, 2),
                            "rss_mb": round(tree_rss_mb(serve.process.pid), 1),
                        }
                    )
                    print(json.dumps(rounds[-1]), file=sys.stderr, flush=True)
                    progress = {"memories": memories, "in_progress": True, "rounds": rounds}
                    record(memories, backend, label, progress)
            total_s = time.perf_counter() - started
            statuses = list_statuses(http)
            peak_rss = max(r["rss_mb"] for r in rounds)
        finally:
            stop_s = serve.stop()
        dynamodb = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        snapshot = Path(tmp) / "state" / "snapshot.jsonl"
        snapshot_mb = snapshot.stat().st_size / 2**20 if snapshot.exists() else 0.0
        restart = restarted(Path(tmp) / "state", stats_file, token, backend, processes, embeddings)

    first, last = rounds[0], rounds[-1]
    return {
        "backend": backend,
        "processes": processes or "serve's default (workers)",
        "load_average_start_end": [load_at_start, load_average()],
        "memories": memories,
        "concurrency": concurrency,
        "round_size": round_size,
        "statuses": statuses,
        "all_ready": statuses.get("ready", 0) == memories,
        "throughput_memories_per_s": round(memories / total_s, 2),
        "wall_ms_per_memory": round(total_s * 1000 / memories, 1),
        "cpu_ms_per_memory": round(cpu_total_s * 1000 / memories, 1),
        "serve_process_cpu_ms_per_memory": round(serve_cpu_total_s * 1000 / memories, 1),
        "postgres_cpu_ms_per_memory": round(postgres_cpu_total_s * 1000 / memories, 1),
        "client_cpu_ms_per_memory": round(client_cpu_total_s * 1000 / memories, 1),
        "first_round_memories_per_s": first["memories_per_s"],
        "last_over_first_cost": round(last["ms_per_memory"] / first["ms_per_memory"], 2),
        "last_over_first_cpu": round(last["cpu_ms_per_memory"] / first["cpu_ms_per_memory"], 2),
        "create_p50_ms": round(statistics.median(all_latencies), 1),
        "create_p95_ms": round(pct(all_latencies, 0.95), 1),
        "peak_rss_mb": peak_rss,
        "startup_s": round(serve.startup_s, 2),
        "sigterm_exit_s": round(stop_s, 2),
        "snapshot_mb": round(snapshot_mb, 1),
        "after_restart": restart,
        "rounds": rounds,
        "dynamodb_handler_ms": dynamodb,
        "env_overrides": overrides(backend, embeddings),
        "note": f"make dev's local cloud (moto in process), offline analyzer, {embeddings} "
        "embedder, one user; RSS is the serve process tree; DynamoDB times are moto's handler "
        "per call",
    }


def record(memories: int, backend: str, label: str | None, result: dict[str, Any]) -> None:
    recorded = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    key = str(memories) if backend == "dynamodb" else f"{memories} {backend}"
    key += f" {label}" if label else ""
    recorded[key] = result
    RESULTS.write_text(json.dumps(recorded, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--round", type=int, default=1000, dest="round_size")
    parser.add_argument(
        "--backend",
        default="dynamodb",
        choices=["dynamodb", "supabase"],
        help="STORAGE_BACKEND of the local cloud (supabase: an embedded Postgres in its state)",
    )
    parser.add_argument(
        "--processes",
        choices=["none", "workers", "all"],
        help="serve's --processes: which functions run in processes of their own",
    )
    parser.add_argument(
        "--embeddings",
        default="hash",
        choices=["hash", "e5", "local"],
        help="EMBEDDINGS_PROVIDER of the local cloud (the offline ones)",
    )
    parser.add_argument("--label", help="record the run under '<key> <label>'")
    args = parser.parse_args()
    result = run(
        args.memories,
        args.concurrency,
        args.round_size,
        args.backend,
        args.processes,
        args.label,
        args.embeddings,
    )
    record(args.memories, args.backend, args.label, result)
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
