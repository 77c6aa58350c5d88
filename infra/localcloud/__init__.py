"""A local cloud for a SAM template: no Docker, no AWS account.

`LocalCloud` reads template.yaml (generically: only what the template declares exists),
creates its tables, queues, buckets and topics in an in-process moto server, serves its HTTP
API and WebSocket API on loopback, pumps its SQS event sources and fires its schedules,
running each function's handler in this process. See `python -m infra.localcloud --help`.
"""

from .cloud import DEFAULT_PORT, LocalCloud
from .runtime import FunctionError, LambdaContext
from .stack import Stack, build_stack
from .template import TemplateError, load_template

__all__ = [
    "DEFAULT_PORT",
    "FunctionError",
    "LambdaContext",
    "LocalCloud",
    "Stack",
    "TemplateError",
    "build_stack",
    "load_template",
]
