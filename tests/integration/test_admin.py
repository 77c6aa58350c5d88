"""Admin routes: 404 for everyone but admins; user usage and limits, limit overrides (seen by
the user in /v1/me), statistics with queue and DLQ depths, DLQ inspection and redrive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import User, make_user, queue_bodies, remove_messages_of


@pytest.fixture
def ops(cloud: object) -> Iterator[User]:
    admin = make_user(cloud, admin=True)
    yield admin
    admin.http.close()


def queue_name(cloud: Any, logical_id: str) -> str:
    return str(cloud.queue_url(logical_id)).rsplit("/", 1)[-1]


ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/admin/users/someone", None),
    ("PUT", "/v1/admin/users/someone/limits", {"daily_writes": 1}),
    ("GET", "/v1/admin/stats", None),
    ("GET", "/v1/admin/dlq", None),
    ("POST", "/v1/admin/dlq/redrive", {"limit": 1}),
]


def test_admin_routes_are_404_for_everyone_else(cloud: Any, user: User, ops: User) -> None:
    from memlayer.auth.jwt import mint_dev_token

    key = user.http.post("/v1/api-keys", json={"name": "k", "scopes": ["read", "write"]}).json()
    forged = mint_dev_token("not-the-secret-but-just-as-long-as-it", "ops", admin=True)
    for token in (None, user.token, key["key"], forged, "garbage"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for method, path, body in ROUTES:
            resp = httpx.request(
                method, cloud.base_url + path, json=body, headers=headers, timeout=30
            )
            assert resp.status_code == 404, (method, path, token, resp.text)
            assert resp.json()["error"] == "not_found"
            assert "WWW-Authenticate" not in resp.headers
    # Nothing changed for "someone".
    resp = ops.http.get("/v1/admin/users/someone")
    assert resp.status_code == 200
    assert resp.json()["overrides"] == {}


def test_admin_sets_limits_and_the_user_sees_them(user: User, other_user: User, ops: User) -> None:
    from memlayer.settings import get_settings

    user.http.post("/v1/memories", json={"content": "hello"})
    path = f"/v1/admin/users/{user.user_id}/limits"

    resp = ops.http.put(path, json={"daily_writes": 7, "max_bytes": 5000})
    assert resp.status_code == 200, resp.text
    defaults = get_settings()
    assert resp.json() == {
        "daily_writes": 7,
        "max_memories": defaults.default_max_memories,
        "max_bytes": 5000,
    }
    # A later patch merges into the earlier override.
    resp = ops.http.put(path, json={"max_memories": 3})
    assert resp.json() == {"daily_writes": 7, "max_memories": 3, "max_bytes": 5000}

    me = user.http.get("/v1/me").json()
    assert me["user_id"] == user.user_id
    assert me["limits"] == {"daily_writes": 7, "max_memories": 3, "max_bytes": 5000}
    assert me["usage"] == {"memories": 1, "bytes": len(b"hello"), "writes_today": 1}

    summary = ops.http.get(f"/v1/admin/users/{user.user_id}").json()
    assert summary["usage"] == me["usage"]
    assert summary["limits"] == me["limits"]
    assert summary["overrides"] == {"daily_writes": 7, "max_bytes": 5000, "max_memories": 3}

    # Another user keeps the defaults.
    assert other_user.http.get("/v1/me").json()["limits"]["daily_writes"] == (
        defaults.default_daily_writes
    )


def test_invalid_limits_are_422(ops: User) -> None:
    for body in ({"daily_writes": -1}, {"max_bytes": "lots"}):
        resp = ops.http.put("/v1/admin/users/u1/limits", json=body)
        assert resp.status_code == 422
        assert resp.json()["error"] == "validation_error"


def test_stats_count_items_and_queues(cloud: Any, user: User, other_user: User, ops: User) -> None:
    from memlayer.ids import new_id

    before = ops.http.get("/v1/admin/stats").json()
    for who in (user, other_user):
        for i in range(3):
            assert who.http.post("/v1/memories", json={"content": f"{i}"}).status_code == 201
    marker = new_id()
    cloud.boto3_client("sqs").send_message(
        QueueUrl=cloud.queue_url("CleanupDLQ"), MessageBody=json.dumps({"marker": marker})
    )

    stats = ops.http.get("/v1/admin/stats").json()

    assert stats["complete"] is True
    assert stats["items"]["memories"] >= before["items"]["memories"] + 6
    assert stats["items"]["jobs"] >= before["items"]["jobs"] + 6
    assert stats["users"] >= before["users"] + 2
    assert set(stats["queues"]) == {"analyze", "embed", "tasks"}
    assert all(q["error"] is None for q in stats["queues"].values())
    dlqs = {lid: queue_name(cloud, lid) for lid in ("AnalyzeDLQ", "EmbedDLQ", "TasksDLQ")}
    dlqs |= {lid: queue_name(cloud, lid) for lid in ("UploadsDLQ", "CleanupDLQ")}
    assert set(stats["dlqs"]) == set(dlqs.values())
    cleanup_dlq = stats["dlqs"][dlqs["CleanupDLQ"]]
    assert cleanup_dlq["visible"] == before["dlqs"][dlqs["CleanupDLQ"]]["visible"] + 1
    remove_messages_of(cloud, "CleanupDLQ", marker)


def test_dlq_peek_leaves_messages_and_redrive_moves_them(cloud: Any, ops: User) -> None:
    from memlayer.ids import new_id

    sqs = cloud.boto3_client("sqs")
    marker = new_id()
    bodies = [json.dumps({"type": "noop", "marker": marker, "n": i}) for i in range(3)]
    for body in bodies:
        sqs.send_message(QueueUrl=cloud.queue_url("CleanupDLQ"), MessageBody=body)
    name = queue_name(cloud, "CleanupDLQ")

    peek = ops.http.get("/v1/admin/dlq", params={"queue": name, "limit": 100})
    assert peek.status_code == 200, peek.text
    mine = [i for i in peek.json()["items"] if marker in i["body"]]
    assert sorted(i["body"] for i in mine) == sorted(bodies)
    assert all(i["queue"] == name and i["receive_count"] >= 1 for i in mine)
    # Peeking left them there, visible.
    assert [b for b in queue_bodies(cloud, "CleanupDLQ") if marker in b] != []
    again = ops.http.get("/v1/admin/dlq", params={"queue": name, "limit": 100}).json()
    assert len([i for i in again["items"] if marker in i["body"]]) == 3
    assert again["depths"][name]["visible"] >= 3

    assert ops.http.get("/v1/admin/dlq", params={"queue": "SomeoneElses"}).status_code == 404

    # The Scheduler's DLQ is no queue's: nothing to redrive it to, and the messages stay.
    resp = ops.http.post("/v1/admin/dlq/redrive", json={"queue": name})
    assert resp.status_code == 200, resp.text
    [result] = resp.json()["results"]
    assert result["source"] is None and result["moved"] == 0 and result["detail"]
    assert len([b for b in queue_bodies(cloud, "CleanupDLQ") if marker in b]) == 3

    remove_messages_of(cloud, "CleanupDLQ", marker)


def test_each_dlq_is_matched_to_its_source_queue(cloud: Any) -> None:
    from memlayer import dlq

    for source, dead in (("AnalyzeQueue", "AnalyzeDLQ"), ("TasksQueue", "TasksDLQ")):
        found = asyncio.run(dlq.source_queue(cloud.queue_url(dead)))
        assert found == cloud.queue_url(source)


def test_redrive_sends_every_message_back_to_its_source(cloud: Any) -> None:
    """On a queue pair of its own (the cloud's pumps consume the template's queues)."""
    from memlayer import dlq
    from memlayer.ids import new_id

    sqs = cloud.boto3_client("sqs")
    suffix = new_id().lower()
    dead = sqs.create_queue(QueueName=f"redrive-dlq-{suffix}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]
    policy = json.dumps({"deadLetterTargetArn": arn["QueueArn"], "maxReceiveCount": 4})
    source = sqs.create_queue(
        QueueName=f"redrive-src-{suffix}", Attributes={"RedrivePolicy": policy}
    )["QueueUrl"]
    bodies = [json.dumps({"n": i}) for i in range(25)]
    for body in bodies:
        sqs.send_message(
            QueueUrl=dead,
            MessageBody=body,
            MessageAttributes={"origin": {"DataType": "String", "StringValue": "test"}},
        )

    peeked = asyncio.run(dlq.peek(dead, limit=5))
    assert len(peeked) == 5 and peeked[0].message_attributes == {"origin": "test"}
    result = asyncio.run(dlq.redrive(dead, limit=1000))

    assert result.source == source.rsplit("/", 1)[-1]
    assert (result.moved, result.failed) == (25, 0)
    moved = []
    while messages := sqs.receive_message(
        QueueUrl=source, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages"):
        moved += messages
        for m in messages:
            sqs.delete_message(QueueUrl=source, ReceiptHandle=m["ReceiptHandle"])
    assert sorted(m["Body"] for m in moved) == sorted(bodies)
    assert all(m["MessageAttributes"]["origin"]["StringValue"] == "test" for m in moved)
    assert sqs.receive_message(QueueUrl=dead).get("Messages") is None
