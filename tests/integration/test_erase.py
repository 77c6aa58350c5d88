"""DELETE /v1/me erases every record, vector, upload, export, job, key, connection and dead
letter of the caller, and nothing of anyone else's."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from memlayer.ids import new_id
from tests.conftest import User, make_user, on_dynamodb_only, queue_bodies, remove_messages_of


@pytest.fixture
def alice(cloud: object) -> Iterator[User]:
    made = make_user(cloud, user_id=f"alice-{new_id()}")
    yield made
    made.http.close()


@pytest.fixture
def bob(cloud: object) -> Iterator[User]:
    made = make_user(cloud, user_id=f"bob-{new_id()}")
    yield made
    made.http.close()


def table_items(cloud: Any) -> list[dict[str, Any]]:
    ddb = cloud.boto3_client("dynamodb")
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": cloud.table_name("Table")}
    while True:
        resp = ddb.scan(**request)
        items += resp["Items"]
        if "LastEvaluatedKey" not in resp:
            return items
        request["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def partition(cloud: Any, user: User) -> list[dict[str, Any]]:
    return [i for i in table_items(cloud) if i["PK"]["S"] == f"USER#{user.user_id}"]


def bucket_keys(cloud: Any) -> set[str]:
    s3 = cloud.boto3_client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=cloud.bucket_name("UploadsBucket"))
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def s3_event(key: str) -> str:
    return json.dumps(
        {"Records": [{"eventName": "ObjectCreated:Post", "s3": {"object": {"key": key}}}]}
    )


async def _seed_store(user_id: str) -> None:
    from memlayer import blobs
    from memlayer.blobs import object_key
    from memlayer.ids import utcnow
    from memlayer.storage import get_store
    from memlayer.storage.pipeline import PendingCapture
    from memlayer.storage.uploads import UploadRecord

    store: Any = get_store()
    now = utcnow()
    await store.put_connection(user_id, f"conn-{new_id()}", int(now.timestamp()) + 3600)
    await store.put_capture(
        PendingCapture(
            user_id=user_id,
            provider="claude",
            conversation_id="c1",
            capture_id=new_id(),
            text="a pending prompt",
            url=None,
            message_id=None,
            captured_at=now.isoformat(),
            expires_at=int(now.timestamp()) + 3600,
        )
    )
    upload_id = new_id()
    await store.put_upload(
        UploadRecord(
            user_id=user_id,
            id=upload_id,
            filename="notes.txt",
            content_type="text/plain",
            size=20,
            key=object_key(user_id, upload_id, "notes.txt"),
            created_at=now,
            updated_at=now,
            url_expires_at=now,
        )
    )
    await blobs.put_bytes(
        f"exports/{quote(user_id, safe='')}/{new_id()}.zip", b"zip", content_type="application/zip"
    )


def seed(cloud: Any, user: User) -> None:
    for i in range(3):
        resp = user.http.post("/v1/memories", json={"content": f"{user.user_id} says {i}"})
        assert resp.status_code == 201, resp.text
    resp = user.http.post(
        "/v1/memories", json={"content": "idempotent"}, headers={"Idempotency-Key": "k1"}
    )
    assert resp.status_code == 201
    assert user.http.post("/v1/api-keys", json={"name": "k", "scopes": ["read"]}).status_code == 201
    asyncio.run(_seed_store(user.user_id))
    sqs = cloud.boto3_client("sqs")
    sqs.send_message(
        QueueUrl=cloud.queue_url("AnalyzeDLQ"),
        MessageBody=json.dumps({"memory_id": new_id(), "user_id": user.user_id, "job_id": "j"}),
    )
    sqs.send_message(
        QueueUrl=cloud.queue_url("UploadsDLQ"),
        MessageBody=s3_event(f"uploads/{user.user_id}/{new_id()}/notes.txt"),
    )


def kinds(items: list[dict[str, Any]]) -> Counter[str]:
    from memlayer.storage.accounts import item_kind

    return Counter(item_kind(i) for i in items)


@on_dynamodb_only
def test_erase_removes_everything_of_the_user_and_nothing_else(
    cloud: Any, alice: User, bob: User
) -> None:
    seed(cloud, alice)
    seed(cloud, bob)
    cloud.drain(timeout=30)  # enrichment done: vectors written, jobs completed
    had = kinds(partition(cloud, alice))
    assert had["memories"] >= 4 and had["vectors"] >= 4 and had["api_keys"] == 1
    alice_objects = {k for k in bucket_keys(cloud) if alice.user_id in k}
    bob_items = {(i["SK"]["S"], i.get("data", {}).get("S")) for i in partition(cloud, bob)}
    bob_objects = {k for k in bucket_keys(cloud) if bob.user_id in k}
    bob_memories = {m["id"] for m in bob.http.get("/v1/memories").json()["items"]}

    resp = alice.http.delete("/v1/me")

    assert resp.status_code == 200, resp.text
    receipt = resp.json()
    assert receipt["completed_at"].endswith("Z")
    deleted = receipt["deleted"]
    for kind in ("memories", "vectors", "jobs", "api_keys", "connections", "captures", "uploads"):
        assert deleted[kind] == had[kind], kind
    assert deleted["files"] == len(alice_objects) >= 1
    assert deleted["dead_letters"] == 2

    cloud.drain(timeout=30)
    # The table: no item anywhere mentions Alice.
    assert [i for i in table_items(cloud) if alice.user_id in json.dumps(i, default=str)] == []
    # The bucket: none of her objects.
    assert [k for k in bucket_keys(cloud) if alice.user_id in k] == []
    # Every queue, dead-letter queues included: none of her messages.
    for logical_id in cloud.stack.queues:
        bodies = queue_bodies(cloud, logical_id)
        assert [b for b in bodies if alice.user_id in b] == [], logical_id

    # Bob: untouched.
    assert bob_items <= {(i["SK"]["S"], i.get("data", {}).get("S")) for i in partition(cloud, bob)}
    assert {k for k in bucket_keys(cloud) if bob.user_id in k} == bob_objects
    assert {m["id"] for m in bob.http.get("/v1/memories").json()["items"]} == bob_memories
    assert [b for b in queue_bodies(cloud, "AnalyzeDLQ") if bob.user_id in b] != []
    assert [b for b in queue_bodies(cloud, "UploadsDLQ") if bob.user_id in b] != []
    for logical_id in ("AnalyzeDLQ", "UploadsDLQ"):
        remove_messages_of(cloud, logical_id, bob.user_id)


def test_erase_while_enrichment_is_in_flight_leaves_nothing(cloud: Any, alice: User) -> None:
    for i in range(5):
        assert alice.http.post("/v1/memories", json={"content": f"fresh {i}"}).status_code == 201

    assert alice.http.delete("/v1/me").status_code == 200
    cloud.drain(timeout=30)

    leftovers = [i for i in table_items(cloud) if alice.user_id in json.dumps(i, default=str)]
    assert [(i["SK"]["S"], sorted(i)) for i in leftovers] == []
    assert alice.http.get("/v1/me").json()["usage"]["memories"] == 0


def test_erase_is_repeatable(alice: User) -> None:
    alice.http.post("/v1/memories", json={"content": "x"})
    first = alice.http.delete("/v1/me").json()["deleted"]
    assert first["memories"] == 1
    second = alice.http.delete("/v1/me").json()["deleted"]
    assert {v for k, v in second.items() if k != "other"} == {0}
    me = alice.http.get("/v1/me").json()
    assert me["usage"] == {"memories": 0, "bytes": 0, "writes_today": 0}


@on_dynamodb_only
def test_erase_keeps_limits_an_admin_set(cloud: Any, alice: User) -> None:
    ops = make_user(cloud, admin=True)
    ops.http.put(f"/v1/admin/users/{alice.user_id}/limits", json={"daily_writes": 3})
    alice.http.post("/v1/memories", json={"content": "x"})
    cloud.drain(timeout=30)

    assert alice.http.delete("/v1/me").status_code == 200

    [profile] = partition(cloud, alice)
    assert profile["SK"]["S"] == "PROFILE"
    assert set(profile) == {"PK", "SK", "limits"}  # the policy, none of her data
    me = alice.http.get("/v1/me").json()
    assert me["limits"]["daily_writes"] == 3
    assert me["usage"]["memories"] == 0
    ops.http.close()
