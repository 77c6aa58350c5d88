"""API keys: shown once, stored only as a hash, scoped (read vs write), revocable, and managed
only from a signed-in session (an API key cannot mint, list or revoke keys, nor erase)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import User, on_dynamodb_only


def with_key(cloud: Any, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=cloud.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def create_key(user: User, scopes: list[str], name: str = "cli") -> dict[str, Any]:
    resp = user.http.post("/v1/api-keys", json={"name": name, "scopes": scopes})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


@on_dynamodb_only
def test_key_is_shown_once_and_stored_only_as_a_hash(cloud: Any, user: User) -> None:
    created = create_key(user, ["read"], name="  my   laptop ")
    key = created["key"]
    assert key.startswith("mlk_") and len(key) >= 4 + 43
    assert created["name"] == "my laptop"
    assert created["scopes"] == ["read"]
    assert created["revoked"] is False and created["last_used_at"] is None
    assert key.startswith(created["prefix"]) and len(created["prefix"]) < len(key) // 2

    listed = user.http.get("/v1/api-keys")
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert item["id"] == created["id"]
    assert "key" not in item
    secret = key[len(created["prefix"]) :]
    assert secret not in listed.text
    ddb = cloud.boto3_client("dynamodb")
    items = ddb.query(
        TableName=cloud.table_name("Table"),
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": f"USER#{user.user_id}"}},
    )["Items"]
    [stored] = [i for i in items if i["SK"]["S"].startswith("KEY#")]
    assert secret not in json.dumps(stored, default=str)  # only the hash is kept


def test_read_key_can_read_but_not_write(cloud: Any, user: User) -> None:
    user.http.post("/v1/memories", json={"content": "first"})
    with with_key(cloud, create_key(user, ["read"])["key"]) as client:
        listed = client.get("/v1/memories")
        assert listed.status_code == 200
        assert [m["content"] for m in listed.json()["items"]] == ["first"]
        me = client.get("/v1/me")
        assert me.status_code == 200 and me.json()["user_id"] == user.user_id

        denied = client.post("/v1/memories", json={"content": "x"})
        assert denied.status_code == 403
        assert denied.json()["error"] == "forbidden"
    assert len(user.http.get("/v1/memories").json()["items"]) == 1


def test_write_key_can_write(cloud: Any, user: User) -> None:
    created = create_key(user, ["write"])  # write implies read
    assert created["scopes"] == ["read", "write"]
    with with_key(cloud, created["key"]) as client:
        assert client.post("/v1/memories", json={"content": "via key"}).status_code == 201
    mine = user.http.get("/v1/memories").json()["items"]
    assert [m["content"] for m in mine] == ["via key"]


def test_revoked_key_is_refused(cloud: Any, user: User) -> None:
    created = create_key(user, ["read", "write"])
    with with_key(cloud, created["key"]) as client:
        assert client.get("/v1/memories").status_code == 200

        assert user.http.delete(f"/v1/api-keys/{created['id']}").status_code == 204

        refused = client.get("/v1/memories")
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert refused.json()["error"] == "unauthorized"
    [item] = user.http.get("/v1/api-keys").json()["items"]
    assert item["revoked"] is True and item["revoked_at"]
    # Revoking again is harmless.
    assert user.http.delete(f"/v1/api-keys/{created['id']}").status_code == 204


def test_unknown_or_malformed_keys_are_401(cloud: Any) -> None:
    for token in ("mlk_" + "A" * 43, "mlk_", "mlk_" + "x" * 500):
        with with_key(cloud, token) as client:
            assert client.get("/v1/memories").status_code == 401, token


def test_another_users_key_cannot_be_revoked(cloud: Any, user: User, other_user: User) -> None:
    created = create_key(user, ["read"])
    assert other_user.http.delete(f"/v1/api-keys/{created['id']}").status_code == 404
    assert other_user.http.get("/v1/api-keys").json()["items"] == []
    with with_key(cloud, created["key"]) as client:
        assert client.get("/v1/memories").status_code == 200
    assert user.http.delete("/v1/api-keys/not-an-id").status_code == 404


def test_api_keys_cannot_manage_keys_or_erase(cloud: Any, user: User) -> None:
    created = create_key(user, ["read", "write"])
    with with_key(cloud, created["key"]) as client:
        attempts = [
            client.post("/v1/api-keys", json={"name": "more", "scopes": ["read"]}),
            client.get("/v1/api-keys"),
            client.delete(f"/v1/api-keys/{created['id']}"),
            client.delete("/v1/me"),
        ]
    assert [r.status_code for r in attempts] == [403, 403, 403, 403]
    [item] = user.http.get("/v1/api-keys").json()["items"]
    assert item["revoked"] is False


def test_invalid_key_requests_are_422(user: User) -> None:
    for body in ({"name": "x", "scopes": ["admin"]}, {"name": "   "}, {"scopes": ["read"]}):
        resp = user.http.post("/v1/api-keys", json=body)
        assert resp.status_code == 422, body
        assert resp.json()["error"] == "validation_error"


def test_last_used_is_recorded_at_most_once_a_minute(user: User) -> None:
    from memlayer.ids import utcnow
    from memlayer.services import api_keys
    from memlayer.storage import get_store

    async def run() -> tuple[Any, Any, bool, bool]:
        record, key = await api_keys.create_api_key(user.user_id, "ci", ["read"])
        principal = await api_keys.authenticate_api_key(key)
        assert principal.user_id == user.user_id and principal.via == "api_key"
        assert principal.scopes == frozenset({"read"}) and not principal.is_admin
        store: Any = get_store()
        first = (await store.get_api_key(user.user_id, record.id)).last_used_at
        await api_keys.authenticate_api_key(key)
        second = (await store.get_api_key(user.user_id, record.id)).last_used_at
        now = utcnow()
        soon = await store.touch_api_key(user.user_id, record.id, now + timedelta(seconds=10))
        later = await store.touch_api_key(user.user_id, record.id, now + timedelta(seconds=61))
        return first, second, soon, later

    first, second, soon, later = asyncio.run(run())
    assert first is not None and first == second
    assert soon is False and later is True


def test_key_count_is_capped(user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    from memlayer.errors import Conflict
    from memlayer.services import api_keys

    monkeypatch.setattr(api_keys, "MAX_ACTIVE_KEYS", 3)

    async def run() -> None:
        for i in range(3):
            await api_keys.create_api_key(user.user_id, f"k{i}", ["read"])
        with pytest.raises(Conflict):
            await api_keys.create_api_key(user.user_id, "one too many", ["read"])

    asyncio.run(run())
