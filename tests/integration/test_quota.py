"""Quotas hold under concurrency: 50 parallel creates against a daily quota of 10 leave exactly
10 memories; the other 40 answer 429 with Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import User, make_user


@pytest.fixture
def ops(cloud: object) -> Iterator[User]:
    admin = make_user(cloud, admin=True)
    yield admin
    admin.http.close()


async def _parallel_creates(base_url: str, token: str, n: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:
        return await asyncio.gather(
            *(client.post("/v1/memories", json={"content": f"note {i}"}) for i in range(n))
        )


def test_parallel_creates_never_exceed_the_daily_quota(cloud: Any, user: User, ops: User) -> None:
    resp = ops.http.put(f"/v1/admin/users/{user.user_id}/limits", json={"daily_writes": 10})
    assert resp.status_code == 200, resp.text
    assert resp.json()["daily_writes"] == 10

    responses = asyncio.run(_parallel_creates(cloud.base_url, user.token, 50))

    created = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(created) == 10, [r.text for r in refused if r.status_code != 429][:3]
    assert len(refused) == 40
    for r in refused:
        assert r.status_code == 429
        assert r.json()["error"] == "quota_exceeded"
        assert int(r.headers["Retry-After"]) >= 1
    ids = {r.json()["id"] for r in created}
    assert len(ids) == 10

    listed = user.http.get("/v1/memories", params={"limit": 100}).json()["items"]
    assert {m["id"] for m in listed} == ids
    me = user.http.get("/v1/me").json()
    assert me["usage"]["memories"] == 10
    assert me["usage"]["writes_today"] == 10
    assert me["limits"]["daily_writes"] == 10


def test_parallel_creates_never_exceed_the_memory_count_limit(cloud: Any, user: User) -> None:
    from memlayer.api.admin import LimitsPatch
    from memlayer.errors import QuotaExceeded
    from memlayer.services import admin, memories
    from memlayer.storage import get_store

    async def run() -> list[Any]:
        await admin.set_limits(user.user_id, LimitsPatch(max_memories=5))
        return await asyncio.gather(
            *(memories.create(user.user_id, memories.Draft(content=f"m{i}")) for i in range(20)),
            return_exceptions=True,
        )

    results = asyncio.run(run())

    assert sum(isinstance(r, memories.Created) for r in results) == 5
    assert sum(isinstance(r, QuotaExceeded) for r in results) == 15
    assert len(asyncio.run(get_store().all_memories(user.user_id))) == 5


def test_a_memory_larger_than_the_storage_limit_is_refused_whole(user: User, ops: User) -> None:
    resp = ops.http.put(f"/v1/admin/users/{user.user_id}/limits", json={"max_bytes": 64})
    assert resp.status_code == 200, resp.text

    refused = user.http.post("/v1/memories", json={"content": "x" * 65})

    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["error"] == "quota_exceeded"
    assert body["detail"] == "memory is larger than the storage limit"
    assert body["request_id"]
    assert int(refused.headers["Retry-After"]) == 3600
    assert user.http.get("/v1/memories").json()["items"] == []
    usage = user.http.get("/v1/me").json()["usage"]
    assert (usage["memories"], usage["bytes"], usage["writes_today"]) == (0, 0, 0)
    # one that fits is written
    assert user.http.post("/v1/memories", json={"content": "x" * 64}).status_code == 201


def test_quota_is_per_user(user: User, other_user: User, ops: User) -> None:
    ops.http.put(f"/v1/admin/users/{user.user_id}/limits", json={"daily_writes": 2})
    codes = [
        user.http.post("/v1/memories", json={"content": f"x{i}"}).status_code for i in range(3)
    ]
    assert codes == [201, 201, 429]
    assert other_user.http.post("/v1/memories", json={"content": "fine"}).status_code == 201
