"""Cold start and warm request time per HTTP function, next to a baseline.

Each measurement runs in a fresh interpreter (as a new Lambda container would): the time to
import the function module and build its app/handler (init), then the warm per-request time
of a GET through the real handler (payload 2.0 event → Mangum → FastAPI → response). The
baseline is a bare FastAPI + Mangum app that imports boto3 and builds a client, measured the
same way in the same run, round-robin with the functions. `mcp_sdk_import` is the mcp function
with the official MCP SDK's server imported too (what its init was when the SDK served the
protocol): the evidence for memlayer.mcp_protocol.

The functions import memlayer from the layer as built (infra.layers: compiled to .pyc, as
deployed), not from the source tree, so neither side compiles at init: the baseline's
site-packages are compiled by pip.

    python -m bench.coldstart [--runs 7] [--functions account admin] [--source]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from infra.layers import build_memlayer_layer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "coldstart.json"

# The GET each function is measured with (functions without a cheap GET use their first route).
WARM_GET = {
    "health": "/v1/health",
    "memories": "/v1/memories/{id}",
}
# Functions measured with a POST instead: the path and its JSON body.
MCP_HEADERS = {
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2025-11-25",
}
WARM_POST = {
    "mcp": ("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    "retrieval": ("/v1/search", {"query": "a memory to find"}),
}
# The mcp function plus the SDK server modules it used to import (not deployed: a measurement).
WITH_SDK = "mcp_sdk_import"
SDK_SERVER_MODULES = ("mcp.server.lowlevel", "mcp.server.streamable_http_manager")

BASELINE_APP = """
import boto3
from fastapi import FastAPI
from mangum import Mangum
client = boto3.client("dynamodb", region_name="us-east-1")
app = FastAPI()
@app.get("/v1/health")
async def health():
    return {"status": "healthy"}
handler = Mangum(app, lifespan="off")
"""


def _event(path: str, token: str | None, body: dict | None = None) -> dict:
    """A payload 2.0 event: a GET, or a JSON POST when there is a body."""
    method = "GET" if body is None else "POST"
    headers = {"host": "bench", "user-agent": "bench"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    if body is not None:
        headers.update(
            MCP_HEADERS if path == "/mcp" else {}, **{"content-type": "application/json"}
        )
    event = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "bench",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "bench",
            },
            "requestId": "bench",
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": "22/Nov/2026:00:00:00 +0000",
            "timeEpoch": 0,
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = json.dumps(body)
    return event


def init(target: str, layer: Path) -> Any:
    """A cold start: imports the function's module (memlayer from `layer`) and returns its
    handler; the baseline builds its bare app."""
    import importlib.util

    if target == "baseline":
        namespace: dict = {}
        exec(compile(BASELINE_APP, "baseline", "exec"), namespace)  # noqa: S102
        return namespace["handler"]
    function = "mcp" if target == WITH_SDK else target
    spec = importlib.util.spec_from_file_location(
        f"fn_{function}", ROOT / "functions" / function / "app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert Path(sys.modules["memlayer"].__file__ or "").is_relative_to(layer)
    if target == WITH_SDK:
        for name in SDK_SERVER_MODULES:
            importlib.import_module(name)
    return module.handler


def child(target: str, requests: int, layer: Path) -> None:
    """Runs in the fresh interpreter: prints one JSON line of timings."""
    sys.path[:0] = [str(layer), str(ROOT)]
    from bench.inprocess import LambdaContext

    context = LambdaContext(f"memlayer-{target}")
    started, started_cpu = time.perf_counter(), time.process_time()
    handler = init(target, layer)
    init_ms = (time.perf_counter() - started) * 1000
    # CPU time is the steadier figure on a shared machine (it leaves out waiting for a core).
    init_cpu_ms = (time.process_time() - started_cpu) * 1000
    heavy = sorted(
        m for m in ("anthropic", "openai", "trafilatura", "torch", "mcp") if m in sys.modules
    )

    from moto import mock_aws

    with mock_aws():
        token, path = None, WARM_GET.get(target, "/v1/health")
        path, body = WARM_POST.get("mcp" if target == WITH_SDK else target, (path, None))
        if target != "baseline":
            import boto3

            from infra.localcloud.resources import table_request
            from infra.localcloud.stack import build_stack
            from memlayer.auth.jwt import mint_dev_token
            from memlayer.settings import get_settings

            table = build_stack(ROOT / "template.yaml").tables["Table"]
            boto3.client("dynamodb").create_table(**table_request("memlayer", table))
            secret = get_settings().supabase_jwt_secret
            assert secret is not None
            token = mint_dev_token(secret.get_secret_value(), "bench")
        if "{id}" in path:
            path = path.replace("{id}", _seed_memory(handler, context, token))
        event = _event(path, token, body)
        # The setup above (moto, the template) leaves garbage that a full collection during the
        # first request would charge it with (up to ~90 ms); a container has no such setup.
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        status = handler(event, context)["statusCode"]
        first_ms = (time.perf_counter() - t0) * 1000
        first_cpu_ms = (time.process_time() - c0) * 1000
        times = []
        for _ in range(requests):
            t0 = time.perf_counter()
            handler(event, context)
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    print(
        json.dumps(
            {
                "init_ms": init_ms,
                "init_cpu_ms": init_cpu_ms,
                "first_request_ms": first_ms,
                "first_request_cpu_ms": first_cpu_ms,
                "warm_p50_ms": statistics.median(times),
                "warm_p99_ms": times[int(len(times) * 0.99) - 1],
                "status": status,
                "heavy_modules_loaded": heavy,
            }
        )
    )


def _seed_memory(handler, context, token: str) -> str:  # type: ignore[no-untyped-def]
    event = _event("/v1/memories", token, {"content": "a memory to read back"})
    return json.loads(handler(event, context)["body"])["id"]


def deployed_constants() -> dict[str, str]:
    """The environment template.yaml gives every function that needs no stack to resolve
    (OPENBLAS_NUM_THREADS, ...): the children run with it, baseline included, as deployed."""
    # Here, not at the top: each child imports this module too, and needs no template reader.
    from infra.localcloud.template import load_template

    variables = load_template(ROOT / "template.yaml")["Globals"]["Function"]["Environment"]
    return {name: value for name, value in variables["Variables"].items() if isinstance(value, str)}


def child_environment(constants: dict[str, str]) -> dict[str, str]:
    """What a child runs with: the template's constants and a dummy AWS identity."""
    return {
        **os.environ,
        **constants,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SUPABASE_JWT_SECRET": "bench-secret-bench-secret-bench-secret",
        "LOG_LEVEL": "ERROR",
        "RATE_LIMIT_PER_USER_PER_MIN": "0",
        "RATE_LIMIT_PER_IP_PER_MIN": "0",
        "POWERTOOLS_METRICS_NAMESPACE": "bench",
    }


def sample(target: str, requests: int, layer: Path, constants: dict[str, str]) -> dict:
    """One cold start of target in a fresh interpreter."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.coldstart",
            "--child",
            target,
            "--requests",
            str(requests),
            "--layer",
            str(layer),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_environment(constants),
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(target: str, samples: list[dict]) -> dict:
    return {
        "init_ms": statistics.median(s["init_ms"] for s in samples),
        "init_cpu_ms": statistics.median(s["init_cpu_ms"] for s in samples),
        "first_request_ms": statistics.median(s["first_request_ms"] for s in samples),
        "first_request_cpu_ms": statistics.median(s["first_request_cpu_ms"] for s in samples),
        "path": _shown_path(target),
        "warm_p50_ms": statistics.median(s["warm_p50_ms"] for s in samples),
        "warm_p99_ms": statistics.median(s["warm_p99_ms"] for s in samples),
        "status": samples[0]["status"],
        "heavy_modules_loaded": samples[0]["heavy_modules_loaded"],
    }


def _shown_path(target: str) -> str:
    target = "mcp" if target == WITH_SDK else target
    if target in WARM_POST:
        path, body = WARM_POST[target]
        return f"POST {path} {body.get('method', '')}".strip()
    return WARM_GET.get(target, "/v1/health")


def http_functions() -> list[str]:
    from infra.localcloud.stack import build_stack

    stack = build_stack(ROOT / "template.yaml")
    return sorted({stack.functions[route.function].code_dir.name for route in stack.routes})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--child")
    parser.add_argument("--layer", type=Path, help="(child) the built memlayer layer's python/")
    parser.add_argument("--functions", nargs="*", help="only these (default: every HTTP one)")
    parser.add_argument(
        "--source",
        action="store_true",
        help="memlayer from the source tree (a layer without .pyc: compiled at each init); "
        "not recorded",
    )
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests, args.layer)
        return
    if args.source:
        run(args, ROOT / "layers" / "memlayer")
        return
    with tempfile.TemporaryDirectory(prefix="memlayer-layer-") as artifacts:
        run(args, build_memlayer_layer(Path(artifacts)))


def run(args: argparse.Namespace, layer: Path) -> None:
    started_load = [round(load, 2) for load in os.getloadavg()]
    functions = args.functions or http_functions()
    targets = ["baseline", *functions, *([WITH_SDK] if "mcp" in functions else [])]
    # Round-robin, so the baseline and every function see the same stretch of the machine's load.
    samples: dict[str, list[dict]] = {target: [] for target in targets}
    constants = deployed_constants()
    for _ in range(args.runs):
        for target in targets:
            samples[target].append(sample(target, args.requests, layer, constants))
    baseline = summarize("baseline", samples["baseline"])
    results = {"baseline": baseline, "functions": {}}
    header = ("function", "init ms", "x base", "cpu x", "1st req ms", "warm p50", "p99", "path")
    row = "{:<10} {:>8} {:>7} {:>6} {:>11} {:>9} {:>7}  {}"
    print(row.format(*header))

    def show(name: str, r: dict) -> None:
        ratio = r["init_ms"] / baseline["init_ms"]
        print(
            row.format(
                name,
                f"{r['init_ms']:.0f}",
                f"{ratio:.2f}",
                f"{r['init_cpu_ms'] / baseline['init_cpu_ms']:.2f}",
                f"{r['first_request_ms']:.1f}",
                f"{r['warm_p50_ms']:.3f}",
                f"{r['warm_p99_ms']:.3f}",
                r["path"],
            )
        )

    show("baseline", baseline)
    for target in targets[1:]:
        result = summarize(target, samples[target])
        result["init_vs_baseline"] = result["init_ms"] / baseline["init_ms"]
        result["init_cpu_vs_baseline"] = result["init_cpu_ms"] / baseline["init_cpu_ms"]
        if target == WITH_SDK:
            results[WITH_SDK] = result
            show("(+sdk)", result)
            continue
        assert not result["heavy_modules_loaded"], (target, result["heavy_modules_loaded"])
        results["functions"][target] = result
        show(target, result)
    # The wall times depend on it (shared cores); the CPU-time ratios much less.
    results["load_average_at_start_1_5_15"] = started_load
    results["load_average_1_5_15"] = [round(load, 2) for load in os.getloadavg()]
    if not args.functions and not args.source:  # a partial run does not replace the recorded one
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
