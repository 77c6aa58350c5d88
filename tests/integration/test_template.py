"""template.yaml and the code cannot drift: every function imports, every HttpApi route is
served by its function, the OpenAPI document is current, every function has a sample event,
and HTTP functions keep heavy SDKs out of their cold start."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infra import openapi
from infra.localcloud.runtime import FunctionRuntime
from infra.localcloud.stack import build_stack

ROOT = Path(__file__).resolve().parents[2]
STACK = build_stack(ROOT / "template.yaml")
HEAVY = (
    "anthropic",
    "openai",
    "trafilatura",
    "pypdf",
    "sentence_transformers",
    "torch",
    "aws_xray_sdk",
    "mcp",  # memlayer.mcp_protocol serves MCP: the SDK's import is over the init budget
    "mcp_types",
    "pydantic.v1",  # FastAPI imported it to ask whether a route's model is one (memlayer.web)
)
# Only the function that ranks at every request loads numpy at init (a seventh of a bare app's
# init); mcp loads it with its first search tool call (memlayer.mcp_tools).
SEARCHING = {"retrieval"}


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_every_function_imports_and_has_a_handler() -> None:
    assert len(STACK.functions) >= 13
    for logical_id, spec in STACK.functions.items():
        handler = FunctionRuntime(spec, namespace="template_test").load()
        assert callable(handler), logical_id


def _served(app: object) -> set[tuple[str, str]]:
    paths = app.openapi()["paths"]  # type: ignore[attr-defined]
    return {(method.upper(), _shape(path)) for path, ops in paths.items() for method in ops}


def test_every_http_route_is_served_by_its_function() -> None:
    apps = openapi.http_apps()
    assert len(STACK.routes) >= 30
    for route in STACK.routes:
        assert (route.method, _shape(route.path)) in _served(apps[route.function]), route


def test_functions_serve_no_route_the_template_lacks() -> None:
    declared = {(r.function, r.method, _shape(r.path)) for r in STACK.routes}
    for logical_id, app in openapi.http_apps().items():
        for method, path in _served(app):
            assert (logical_id, method, path) in declared, (logical_id, method, path)


def test_the_openapi_document_is_current() -> None:
    rendered = openapi.render()
    for target in openapi.TARGETS:
        assert target.read_text() == rendered, f"{target} drifted: run `make openapi`"
    paths = json.loads(rendered)["paths"]
    assert {_shape(r.path) for r in STACK.routes} <= {_shape(p) for p in paths}


def test_every_function_has_a_sample_event() -> None:
    events = [p.name for p in (ROOT / "events").glob("*.json")]
    for spec in STACK.functions.values():
        assert spec.code_dir is not None
        assert any(name.startswith(spec.code_dir.name) for name in events), spec.code_dir.name


@pytest.mark.parametrize(
    "name", sorted({STACK.functions[r.function].code_dir.name for r in STACK.routes})
)  # type: ignore[union-attr]
def test_http_functions_import_no_heavy_sdk(name: str) -> None:
    app = str(ROOT / "functions" / name / "app.py")
    heavy = HEAVY if name in SEARCHING else (*HEAVY, "numpy")
    code = (
        "import importlib.util, json, sys\n"
        f"sys.path[:0] = [{str(ROOT / 'layers/memlayer')!r}]\n"
        f"spec = importlib.util.spec_from_file_location('fn', {app!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(("disabled", "traced"), [("false", True), ("true", False)])
def test_workers_build_their_tracer_only_when_tracing_is_on(disabled: str, traced: bool) -> None:
    app = str(ROOT / "functions" / "embed" / "app.py")
    code = (
        "import importlib.util, sys\n"
        f"sys.path[:0] = [{str(ROOT / 'layers/memlayer')!r}]\n"
        f"spec = importlib.util.spec_from_file_location('fn', {app!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert callable(module.handler)\n"
        "print('aws_xray_sdk' in sys.modules)\n"
    )
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": disabled}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip().splitlines()[-1] == str(traced)
