"""WebSocket API ($connect, $disconnect, $default): live job progress for the extension.

Browsers cannot set headers on a WebSocket, so `$connect` takes the same bearer token as the
HTTP API in the `token` query parameter (or an Authorization header when the client can)."""

from typing import Any

from memlayer import secrets
from memlayer.observability import logger
from memlayer.runloop import run
from memlayer.services import connections


# Logs carry the Lambda context and, as correlation id, API Gateway's id of the WebSocket event.
@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    secrets.refresh(context.function_name)  # before the loop, as the HTTP functions do
    return run(connections.route(event))
