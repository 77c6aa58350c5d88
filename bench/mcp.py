"""Warm search through MCP vs REST: `tools/call search_memories` on POST /mcp against
POST /v1/search, on the same data in the same container; MCP both after the `initialize`
handshake (protocol 2025-11-25) and in the 2026-07-28 per-request envelope.

Under in-process moto, one user's N memories are written straight into the table (with their
hash-embedder vectors), both functions' real handlers are loaded, and each warm request goes
payload 2.0 event → Mangum → FastAPI → (memlayer.mcp_protocol) → the retrieval service,
alternating REST and MCP so both see the same machine load. Both hit the same warm search
index (one per container), so the difference is what the MCP transport adds. Rate limits are
off for both (each limit is a DynamoDB update, the same for both).

    python -m bench.mcp [--memories 1000] [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "mcp.json"
QUERY = {"query": "kubernetes detail", "limit": 10}
MODERN = "2026-07-28"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


def _timed(handler: Any, event: dict[str, Any]) -> tuple[tuple[float, float], dict[str, Any]]:
    """(wall ms, CPU ms) of one request, and its JSON body. CPU time is the steadier figure on
    a shared machine: it leaves out the time other processes hold the cores."""
    t0, c0 = time.perf_counter(), time.process_time()
    response = handler(event)
    elapsed = ((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000)
    assert response["statusCode"] == 200, response
    return elapsed, json.loads(response["body"])


def _stats(samples: list[tuple[float, float]]) -> dict[str, float]:
    wall = sorted(s[0] for s in samples)
    return {
        "p50_ms": round(statistics.median(wall), 3),
        "p99_ms": round(wall[max(0, int(len(wall) * 0.99) - 1)], 3),
        "cpu_p50_ms": round(statistics.median(s[1] for s in samples), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    from bench.inprocess import function_handler, in_process_aws

    with in_process_aws(
        SUPABASE_JWT_SECRET="bench-secret-bench-secret-bench-secret",  # noqa: S106
        RATE_LIMIT_PER_USER_PER_MIN="0",
        RATE_LIMIT_PER_IP_PER_MIN="0",
        DEFAULT_MAX_MEMORIES="0",
        POWERTOOLS_METRICS_NAMESPACE="bench",
    ):
        from bench.coldstart import _event
        from bench.retrieval.refresh import USER, seed
        from memlayer.auth.jwt import mint_dev_token
        from memlayer.runloop import run
        from memlayer.settings import get_settings

        run(seed(args.memories))
        secret = get_settings().supabase_jwt_secret
        assert secret is not None
        token = mint_dev_token(secret.get_secret_value(), USER)
        rest, mcp = function_handler("retrieval"), function_handler("mcp")
        rest_event = _event("/v1/search", token, QUERY)
        call = {"name": "search_memories", "arguments": QUERY}
        mcp_event = _event(
            "/mcp", token, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}
        )
        # The same call in the 2026-07-28 per-request envelope (no initialize handshake).
        modern_event = _event(
            "/mcp",
            token,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {**call, "_meta": MODERN_META},
            },
        )
        modern_event["headers"].update(
            {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": call["name"]}
        )
        (first_ms, _), _ = _timed(rest, rest_event)  # loads the user's index (shared by all)
        _, rest_body = _timed(rest, rest_event)
        expected = [item["memory"]["id"] for item in rest_body["items"]]
        assert len(expected) == QUERY["limit"]
        for event in (mcp_event, modern_event):
            _, body = _timed(mcp, event)
            found = [r["id"] for r in body["result"]["structuredContent"]["results"]]
            assert found == expected, "not the same hits"
        events = {
            "rest": (rest, rest_event),
            "mcp": (mcp, mcp_event),
            "mcp_2026": (mcp, modern_event),
        }
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in events}
        for _ in range(args.requests):
            for name, (handler, event) in events.items():
                timings[name].append(_timed(handler, event)[0])
    rest_stats, mcp_stats = _stats(timings["rest"]), _stats(timings["mcp"])
    modern_stats = _stats(timings["mcp_2026"])
    out = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # The wall times depend on it (shared cores); the CPU times much less.
        "load_average_1_5_15": [round(load, 2) for load in os.getloadavg()],
        "memories": args.memories,
        "requests": args.requests,
        "index_load_ms": round(first_ms, 1),
        "rest_search": rest_stats,
        "mcp_search_memories": mcp_stats,
        "mcp_2026_search_memories": modern_stats,
        "mcp_minus_rest_p50_ms": round(mcp_stats["p50_ms"] - rest_stats["p50_ms"], 3),
        "mcp_2026_minus_rest_p50_ms": round(modern_stats["p50_ms"] - rest_stats["p50_ms"], 3),
        "mcp_minus_rest_cpu_p50_ms": round(mcp_stats["cpu_p50_ms"] - rest_stats["cpu_p50_ms"], 3),
    }
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
