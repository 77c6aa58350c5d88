"""WebSocket API ($connect, $disconnect, $default): live job progress for the extension.

Browsers cannot set headers on a WebSocket, so `$connect` takes the same bearer token as the
HTTP API in the `token` query parameter (or an Authorization header when the client can)."""

from typing import Any

from memlayer.runloop import run
from memlayer.services import connections


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run(connections.route(event))
