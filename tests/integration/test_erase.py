"""DELETE /v1/me erases every record, vector, upload, export, job, key, connection and dead
letter of the caller, and nothing of anyone else's."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import uuid
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from infra.localcloud.template import load_template
from memlayer.auth.jwt import mint_dev_token

ROOT = Path(__file__).resolve().parents[2]
SECRET = "memlayer-test-secret-0123456789abcdef"
REGION = "us-east-1"


# ---------------------------------------------------------------- moto stack from template.yaml
# (Until the shared `cloud` fixture lands; the same block is in each accounts test module.)
def load_function(name: str) -> ModuleType:
    path = ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"fn_{name}_{uuid.uuid4().hex}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reset_caches() -> None:
    from memlayer import auth, aws
    from memlayer.settings import get_settings
    from memlayer.storage import get_store

    get_settings.cache_clear()
    get_store.cache_clear()
    aws.client.cache_clear()
    auth._verifier.cache_clear()


@pytest.fixture(scope="module")
def stack() -> Any:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from _stack(monkeypatch)


def _stack(monkeypatch: pytest.MonkeyPatch) -> Any:
    template = load_template(ROOT / "template.yaml")
    resources = template["Resources"]
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        "SUPABASE_JWT_SECRET": SECRET,
        "TABLE_NAME": "memlayer-test",
        "UPLOADS_BUCKET": "memlayer-test-uploads",
    }.items():
        monkeypatch.setenv(key, value)
    # moto is not thread-safe (parallel transactions overshoot conditions and raise); real
    # DynamoDB serializes conflicting writes, so the fake handles one request at a time. The
    # application's own concurrency stays real.
    lock = threading.Lock()
    original = BotocoreStubber.process_request

    def serialized(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "process_request", serialized)
    with mock_aws():
        table = resources["Table"]["Properties"]
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(
            TableName="memlayer-test",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=table["AttributeDefinitions"],
            KeySchema=table["KeySchema"],
            GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
        )
        sqs = boto3.client("sqs", region_name=REGION)
        queues = {
            lid: r.get("Properties") or {}
            for lid, r in resources.items()
            if r["Type"] == "AWS::SQS::Queue"
        }
        urls: dict[str, str] = {}
        for lid, props in sorted(queues.items(), key=lambda kv: "RedrivePolicy" in kv[1]):
            attributes = {}
            if "RedrivePolicy" in props:
                policy = props["RedrivePolicy"]
                target = urls[policy["deadLetterTargetArn"]["Fn::GetAtt"][0]]
                arn = sqs.get_queue_attributes(QueueUrl=target, AttributeNames=["QueueArn"])
                attributes["RedrivePolicy"] = json.dumps(
                    {
                        "deadLetterTargetArn": arn["Attributes"]["QueueArn"],
                        "maxReceiveCount": policy["maxReceiveCount"],
                    }
                )
            urls[lid] = sqs.create_queue(QueueName=lid, Attributes=attributes)["QueueUrl"]
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="memlayer-test-uploads")
        env = template["Globals"]["Function"]["Environment"]["Variables"]
        dlqs = [urls[ref["Ref"]] for ref in env["DLQ_URLS"]["Fn::Join"][1]]
        monkeypatch.setenv("ANALYZE_QUEUE_URL", urls["AnalyzeQueue"])
        monkeypatch.setenv("EMBED_QUEUE_URL", urls["EmbedQueue"])
        monkeypatch.setenv("TASKS_QUEUE_URL", urls["TasksQueue"])
        monkeypatch.setenv("DLQ_URLS", ",".join(dlqs))
        reset_caches()
        yield SimpleNamespace(ddb=ddb, sqs=sqs, s3=s3, queues=urls, bucket="memlayer-test-uploads")
    reset_caches()


def bearer(user_id: str, *, admin: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_dev_token(SECRET, user_id, admin=admin)}"}


# ---------------------------------------------------------------- tests
TABLE = "memlayer-test"


@pytest.fixture(scope="module")
def apps(stack: Any) -> SimpleNamespace:
    return SimpleNamespace(
        account=TestClient(load_function("account").app),
        memories=TestClient(load_function("memories").app),
        admin=TestClient(load_function("admin").app),
    )


def table_items(stack: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": TABLE}
    while True:
        resp = stack.ddb.scan(**request)
        items += resp["Items"]
        if "LastEvaluatedKey" not in resp:
            return items
        request["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def partition(stack: Any, user: str) -> set[str]:
    return {i["SK"]["S"] for i in table_items(stack) if i["PK"]["S"] == f"USER#{user}"}


def bucket_keys(stack: Any) -> set[str]:
    resp = stack.s3.list_objects_v2(Bucket=stack.bucket)
    return {o["Key"] for o in resp.get("Contents", [])}


def peek_all(stack: Any, queue: str) -> list[str]:
    """Every message body in a queue, left in place."""
    url = stack.queues[queue]
    bodies, handles = [], []
    while messages := stack.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30
    ).get("Messages"):
        for m in messages:
            bodies.append(m["Body"])
            handles.append(m["ReceiptHandle"])
    for handle in handles:
        stack.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    return bodies


def s3_event(key: str) -> str:
    return json.dumps(
        {"Records": [{"eventName": "ObjectCreated:Post", "s3": {"object": {"key": key}}}]}
    )


async def _seed_store(stack: Any, user: str, memory_id: str) -> dict[str, str]:
    from memlayer import blobs
    from memlayer.ids import new_id, utcnow
    from memlayer.services.uploads import object_key
    from memlayer.storage import get_store
    from memlayer.storage.base import StoredVector
    from memlayer.storage.pipeline import PendingCapture
    from memlayer.storage.uploads import UploadRecord

    store: Any = get_store()
    now = utcnow()
    await store.put_vectors(
        user,
        [StoredVector(memory_id=memory_id, space="hash:v1", content_hash="h", vector=b"\0" * 8)],
    )
    await store.put_connection(user, f"conn-{user}", int(now.timestamp()) + 3600)
    await store.put_capture(
        PendingCapture(
            user_id=user,
            provider="claude",
            conversation_id="c1",
            capture_id=new_id(),
            text="a pending prompt",
            url=None,
            message_id=None,
            captured_at=now.isoformat(),
            expires_at=int(now.timestamp()) + 300,
        )
    )
    upload_id = new_id()
    key = object_key(user, upload_id, "report.pdf")
    await store.put_upload(
        UploadRecord(
            user_id=user,
            id=upload_id,
            filename="report.pdf",
            content_type="application/pdf",
            size=3,
            key=key,
            created_at=now,
            updated_at=now,
            url_expires_at=now,
        )
    )
    await blobs.put_bytes(key, b"pdf", content_type="application/pdf")
    export = f"exports/{quote(user, safe='')}/{new_id()}.zip"
    await blobs.put_bytes(export, b"zip", content_type="application/zip")
    return {"upload_key": key, "export_key": export}


def seed(stack: Any, apps: SimpleNamespace, user: str) -> SimpleNamespace:
    ids = []
    for i in range(3):
        resp = apps.memories.post(
            "/v1/memories", json={"content": f"{user} {i}"}, headers=bearer(user)
        )
        assert resp.status_code == 201
        ids.append(resp.json()["id"])
    resp = apps.memories.post(
        "/v1/memories",
        json={"content": "idempotent"},
        headers={**bearer(user), "Idempotency-Key": "k1"},
    )
    ids.append(resp.json()["id"])
    key = apps.account.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["read"]}, headers=bearer(user)
    ).json()["key"]
    objects = asyncio.run(_seed_store(stack, user, ids[0]))
    stack.sqs.send_message(
        QueueUrl=stack.queues["AnalyzeDLQ"],
        MessageBody=json.dumps({"memory_id": ids[1], "user_id": user, "job_id": "j"}),
    )
    stack.sqs.send_message(
        QueueUrl=stack.queues["UploadsDLQ"], MessageBody=s3_event(objects["upload_key"])
    )
    return SimpleNamespace(memory_ids=ids, key=key, **objects)


def test_erase_removes_everything_of_the_user_and_nothing_else(
    stack: Any, apps: SimpleNamespace
) -> None:
    from memlayer.storage import get_store

    alice, bob = f"alice-{uuid.uuid4()}", f"bob-{uuid.uuid4()}"
    a = seed(stack, apps, alice)
    b = seed(stack, apps, bob)
    bob_items = partition(stack, bob)
    bob_objects = {k for k in bucket_keys(stack) if bob in k}
    assert len(bob_objects) == 2

    resp = apps.account.delete("/v1/me", headers=bearer(alice))

    assert resp.status_code == 200, resp.text
    receipt = resp.json()
    assert receipt["completed_at"].endswith("Z")
    deleted = receipt["deleted"]
    assert {k: deleted[k] for k in ("memories", "vectors", "jobs", "api_keys")} == {
        "memories": 4,
        "vectors": 1,
        "jobs": 4,
        "api_keys": 1,
    }
    assert deleted["connections"] == 1
    assert deleted["captures"] == 1
    assert deleted["uploads"] == 1
    assert deleted["files"] == 2
    assert deleted["dead_letters"] == 2
    assert deleted["other"] >= 3  # profile, day counter, idempotency record, rate windows

    # The table: nothing in Alice's partition, and no item anywhere mentions her.
    items = table_items(stack)
    assert not [i for i in items if alice in json.dumps(i, default=str)]
    # The bucket: none of her objects.
    assert not [k for k in bucket_keys(stack) if alice in k]
    # The dead-letter queues: none of her messages; Bob's are still there.
    for dlq in ("AnalyzeDLQ", "EmbedDLQ", "TasksDLQ", "UploadsDLQ", "CleanupDLQ"):
        bodies = peek_all(stack, dlq)
        assert not [body for body in bodies if alice in body], dlq
    assert [body for body in peek_all(stack, "AnalyzeDLQ") if bob in body]
    assert [body for body in peek_all(stack, "UploadsDLQ") if bob in body]
    # The work queues carry only ids; hers now point at nothing, so workers drop them.
    pending = [json.loads(body) for body in peek_all(stack, "AnalyzeQueue") if alice in body]
    assert len(pending) == 4
    for message in pending:
        assert asyncio.run(get_store().get_memory(alice, message["memory_id"])) is None

    # Bob: untouched.
    assert partition(stack, bob) >= bob_items
    assert {k for k in bucket_keys(stack) if bob in k} == bob_objects
    listed = apps.memories.get("/v1/memories", headers=bearer(bob)).json()["items"]
    assert {m["id"] for m in listed} == set(b.memory_ids)
    assert (
        apps.memories.get("/v1/memories", headers={"Authorization": f"Bearer {b.key}"}).status_code
        == 200
    )
    # Alice's key died with her account.
    assert (
        apps.memories.get("/v1/memories", headers={"Authorization": f"Bearer {a.key}"}).status_code
        == 401
    )


def test_erase_is_repeatable(stack: Any, apps: SimpleNamespace) -> None:
    user = f"user-{uuid.uuid4()}"
    apps.memories.post("/v1/memories", json={"content": "x"}, headers=bearer(user))
    first = apps.account.delete("/v1/me", headers=bearer(user)).json()["deleted"]
    assert first["memories"] == 1
    second = apps.account.delete("/v1/me", headers=bearer(user)).json()["deleted"]
    counted = {k: v for k, v in second.items() if k != "other"}
    assert set(counted.values()) == {0}
    me = apps.account.get("/v1/me", headers=bearer(user)).json()
    assert me["usage"] == {"memories": 0, "bytes": 0, "writes_today": 0}


def test_erase_keeps_limits_an_admin_set(stack: Any, apps: SimpleNamespace) -> None:
    user = f"user-{uuid.uuid4()}"
    admin = bearer("ops", admin=True)
    apps.admin.put(f"/v1/admin/users/{user}/limits", json={"daily_writes": 3}, headers=admin)
    apps.memories.post("/v1/memories", json={"content": "x"}, headers=bearer(user))

    assert apps.account.delete("/v1/me", headers=bearer(user)).status_code == 200

    assert partition(stack, user) == {"PROFILE"}
    [profile] = [i for i in table_items(stack) if i["PK"]["S"] == f"USER#{user}"]
    assert set(profile) == {"PK", "SK", "limits"}  # the policy, none of the user's data
    me = apps.account.get("/v1/me", headers=bearer(user)).json()
    assert me["limits"]["daily_writes"] == 3
    assert me["usage"]["memories"] == 0
