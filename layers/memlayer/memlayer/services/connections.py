"""WebSocket connections: authenticated on $connect, stored with a TTL, removed on
$disconnect (and pruned when a push finds them gone)."""

from __future__ import annotations

import json
import time
from typing import Any

from memlayer.auth import authenticate
from memlayer.errors import Unauthorized
from memlayer.observability import logger
from memlayer.settings import get_settings
from memlayer.storage import get_store


def _response(status: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(body or {})}


async def route(event: dict[str, Any]) -> dict[str, Any]:
    context = event.get("requestContext", {})
    route_key = context.get("routeKey")
    connection_id = context.get("connectionId")
    if not connection_id:
        return _response(400, {"error": "bad_request"})
    if route_key == "$connect":
        return await connect(event, connection_id)
    if route_key == "$disconnect":
        await get_store().delete_connection(connection_id)
        return _response(200)
    # $default: the only client message is a ping; progress flows server → client.
    return _response(200, {"type": "pong"})


async def connect(event: dict[str, Any], connection_id: str) -> dict[str, Any]:
    query = event.get("queryStringParameters") or {}
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    authorization = headers.get("authorization") or (
        f"Bearer {query['token']}" if query.get("token") else None
    )
    try:
        principal = await authenticate(authorization)
    except Unauthorized:
        return _response(401, {"error": "unauthorized"})
    expires_at = int(time.time()) + get_settings().connection_ttl_seconds
    await get_store().put_connection(principal.user_id, connection_id, expires_at)
    logger.info("websocket connected", connection_id=connection_id)
    return _response(200)
