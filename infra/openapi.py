"""The OpenAPI document of every HTTP function, merged from the functions' FastAPI apps.

python -m infra.openapi --write    # regenerate docs/openapi.json (+ the copy health serves)
python -m infra.openapi --check    # exit 1 when the committed document has drifted
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from infra.localcloud.runtime import FunctionRuntime
from infra.localcloud.stack import build_stack

ROOT = Path(__file__).resolve().parent.parent
TARGETS = (ROOT / "docs" / "openapi.json", ROOT / "layers/memlayer/memlayer/openapi.json")


def http_apps(template: Path = ROOT / "template.yaml") -> dict[str, Any]:
    """The FastAPI app of every function that serves an HttpApi route, by logical id."""
    stack = build_stack(template)
    sys.path.insert(0, str(ROOT / "layers" / "memlayer"))
    apps = {}
    for logical_id in sorted({route.function for route in stack.routes}):
        runtime = FunctionRuntime(stack.functions[logical_id], namespace="openapi_fn")
        runtime.load()
        apps[logical_id] = sys.modules[runtime.module_name].app
    return apps


def document() -> dict[str, Any]:
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "memlayer",
            "version": "1.0.0",
            "description": "The memlayer HTTP API (v1). Auth: `Authorization: Bearer <Supabase "
            "JWT | mlk_ API key>`. Errors: `{error, detail, request_id}`.",
        },
        "paths": {},
        "components": {
            "schemas": {},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
    for app in http_apps().values():
        spec = app.openapi()
        for path, operations in spec.get("paths", {}).items():
            merged["paths"].setdefault(path, {}).update(operations)
        merged["components"]["schemas"].update(spec.get("components", {}).get("schemas", {}))
    merged["paths"] = dict(sorted(merged["paths"].items()))
    merged["components"]["schemas"] = dict(sorted(merged["components"]["schemas"].items()))
    return merged


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.write:
        for target in TARGETS:
            target.write_text(text)
        return 0
    stale = [str(t) for t in TARGETS if not t.exists() or t.read_text() != text]
    if stale:
        print("OpenAPI document drifted; run `make openapi`:", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
