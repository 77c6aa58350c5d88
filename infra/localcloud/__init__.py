"""A local cloud for a SAM template: no Docker, no AWS account.

`LocalCloud` reads template.yaml (generically: only what the template declares exists),
creates its tables, queues, buckets and topics in an in-process moto server, serves its HTTP
API and WebSocket API on loopback, pumps its SQS event sources and fires its schedules,
running each function's handler in this process. See `python -m infra.localcloud --help`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Where each name lives: imported on first use, so a function's own process (`container`)
# does not load the server (uvicorn, the gateway, moto) to run one handler.
_EXPORTS = {
    "DEFAULT_PORT": "cloud",
    "LocalCloud": "cloud",
    "FunctionError": "runtime",
    "LambdaContext": "runtime",
    "Stack": "stack",
    "build_stack": "stack",
    "TemplateError": "template",
    "load_template": "template",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
