"""WebSocket connections: authenticated on $connect, stored with a TTL, removed on
$disconnect (and pruned when a push finds them gone).

A subscription lives no longer than its credential: it ends when the token it was opened with
expires (the stored expiry is the token's `exp` when that comes first) or the API key it was
opened with is revoked; the next push closes it instead of delivering (`jobs.notify`)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from memlayer import invocation, push
from memlayer.errors import Unauthorized
from memlayer.observability import logger
from memlayer.services.api_keys import authenticate
from memlayer.settings import get_settings
from memlayer.storage import get_store
from memlayer.storage.connections import Connection


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


async def live_connections(user_id: str) -> list[str]:
    """The user's connections that may still receive pushes, looked up once per worker
    invocation (a batch's records share the list; a push that finds a connection gone takes
    it out). Most users have none, so most pushes cost no call at all. Connections whose
    credential expired or whose API key was revoked are closed and forgotten here."""
    return await invocation.once(("live_connections", user_id), lambda: _look_up(user_id))


async def _look_up(user_id: str) -> list[str]:
    store = get_store()
    connections: list[Connection] = await store.list_connections(user_id)
    now = time.time()
    key_ids = {c.key_id for c in connections if c.key_id is not None and c.expires_at > now}
    keys = await asyncio.gather(*(store.get_api_key(user_id, key_id) for key_id in key_ids))
    revoked = {
        key_id for key_id, key in zip(key_ids, keys, strict=True) if key is None or key.revoked
    }
    live: list[str] = []
    ended: list[str] = []
    for connection in connections:
        over = connection.expires_at <= now or connection.key_id in revoked
        (ended if over else live).append(connection.connection_id)
    for connection_id in ended:
        logger.info("websocket subscription ended", connection_id=connection_id)
        await push.close(connection_id)
        await store.delete_connection(connection_id)
    return live


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
    if principal.expires_at is not None:
        expires_at = min(expires_at, int(principal.expires_at))
    await get_store().put_connection(
        principal.user_id, connection_id, expires_at, key_id=principal.key_id
    )
    logger.info("websocket connected", connection_id=connection_id)
    return _response(200)
