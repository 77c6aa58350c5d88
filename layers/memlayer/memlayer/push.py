"""Pushes to WebSocket clients through the API Gateway management API (data access)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from memlayer import aws
from memlayer.settings import get_settings


def _post(connection_id: str, data: bytes) -> bool:
    endpoint = get_settings().ws_management_endpoint
    client = aws.client("apigatewaymanagementapi", endpoint)
    try:
        client.post_to_connection(ConnectionId=connection_id, Data=data)
    except client.exceptions.GoneException:
        return False
    return True


def _close(connection_id: str) -> None:
    endpoint = get_settings().ws_management_endpoint
    client = aws.client("apigatewaymanagementapi", endpoint)
    try:
        client.delete_connection(ConnectionId=connection_id)
    except client.exceptions.GoneException:
        return


async def close(connection_id: str) -> None:
    """Closes a connection from the server side (already gone is fine)."""
    if get_settings().ws_management_endpoint:
        await asyncio.to_thread(_close, connection_id)


async def post(connection_id: str, message: dict[str, Any]) -> bool:
    """Sends one message; False when the connection is gone (the caller prunes it)."""
    if not get_settings().ws_management_endpoint:
        return True
    data = json.dumps(message, separators=(",", ":")).encode()
    return await asyncio.to_thread(_post, connection_id, data)
