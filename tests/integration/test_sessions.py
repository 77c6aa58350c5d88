"""Sessions end with their credential: a WebSocket subscription gets no more progress (and is
closed) once the token it was opened with expires or its API key is revoked. And what a
read-only API key may do about exports (it may start one: see README, "API keys")."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import JWT_SECRET, User


def api_key(user: User, scopes: list[str]) -> dict[str, Any]:
    response = user.http.post("/v1/api-keys", json={"name": "ws", "scopes": scopes})
    assert response.status_code == 201, response.text
    return dict(response.json())


def progress_of_a_new_memory(user: User, socket: ClientConnection, *, until: str) -> list[str]:
    """Creates a memory and collects the progress pushed for its job until `until` (or the
    socket is quiet or closed)."""
    created = user.http.post("/v1/memories", json={"content": "pushed or not"})
    assert created.status_code == 201, created.text
    job_id = created.json()["job_id"]
    stages = []
    try:
        while True:
            message = json.loads(socket.recv(timeout=8))
            if message["job_id"] != job_id:
                continue  # an earlier memory's progress
            stages.append(message["status"])
            if message["status"] == until:
                return stages
    except (TimeoutError, ConnectionClosed):
        return stages


def closed(socket: ClientConnection) -> bool:
    try:
        socket.recv(timeout=5)
    except ConnectionClosed:
        return True
    except TimeoutError:
        return False
    return False


def test_a_subscription_ends_when_its_token_expires(cloud: Any, user: User) -> None:
    from memlayer.auth.jwt import mint_dev_token

    ttl = 10  # long enough for the first stage under load
    short = mint_dev_token(JWT_SECRET, user.user_id, ttl_seconds=ttl)
    expires = time.time() + ttl
    with connect(f"{cloud.ws_url}?token={short}", open_timeout=5) as socket:
        assert progress_of_a_new_memory(user, socket, until="analyzing")  # while it is valid
        time.sleep(max(0.0, expires - time.time()) + 1)
        assert progress_of_a_new_memory(user, socket, until="completed") == []
        assert closed(socket)  # closed by the server, not merely left quiet


def test_a_subscription_ends_when_its_key_is_revoked(cloud: Any, user: User) -> None:
    key = api_key(user, ["read"])
    with connect(f"{cloud.ws_url}?token={key['key']}", open_timeout=5) as socket:
        assert progress_of_a_new_memory(user, socket, until="completed")[-1] == "completed"
        assert user.http.delete(f"/v1/api-keys/{key['id']}").status_code == 204
        assert progress_of_a_new_memory(user, socket, until="completed") == []
        assert closed(socket)  # closed by the server, not merely left quiet


@pytest.mark.parametrize("scopes", [["read"], ["read", "write"]])
def test_any_api_key_may_start_an_export(cloud: Any, user: User, scopes: list[str]) -> None:
    """An export is a read: it holds nothing a read key cannot already page through, and its
    link is only shown to the owner's credentials (GET /v1/jobs/{id})."""
    key = api_key(user, scopes)
    with httpx.Client(
        base_url=cloud.base_url, headers={"Authorization": f"Bearer {key['key']}"}
    ) as http:
        started = http.post("/v1/export")
        assert started.status_code == 202, started.text
        assert http.get(started.json()["status_url"]).status_code == 200
        if scopes == ["read"]:
            assert http.post("/v1/memories", json={"content": "x"}).status_code == 403
