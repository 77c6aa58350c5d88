"""Admin routes: 404 for everyone but admins; user usage and limits, limit overrides (seen by
the user in /v1/me), statistics with queue and DLQ depths, DLQ inspection and redrive."""

from __future__ import annotations

import importlib.util
import json
import threading
import uuid
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

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
ADMIN = bearer("ops-admin", admin=True)


@pytest.fixture(scope="module")
def apps(stack: Any) -> SimpleNamespace:
    return SimpleNamespace(
        admin=TestClient(load_function("admin").app),
        account=TestClient(load_function("account").app),
        memories=TestClient(load_function("memories").app),
    )


def drain(stack: Any, queue: str) -> list[str]:
    bodies = []
    while True:
        resp = stack.sqs.receive_message(
            QueueUrl=stack.queues[queue], MaxNumberOfMessages=10, VisibilityTimeout=60
        )
        messages = resp.get("Messages", [])
        if not messages:
            return bodies
        for m in messages:
            bodies.append(m["Body"])
            stack.sqs.delete_message(QueueUrl=stack.queues[queue], ReceiptHandle=m["ReceiptHandle"])


def routes() -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", "/v1/admin/users/someone", None),
        ("PUT", "/v1/admin/users/someone/limits", {"daily_writes": 1}),
        ("GET", "/v1/admin/stats", None),
        ("GET", "/v1/admin/dlq", None),
        ("POST", "/v1/admin/dlq/redrive", {}),
    ]


def test_admin_routes_are_404_for_everyone_else(stack: Any, apps: SimpleNamespace) -> None:
    user = f"user-{uuid.uuid4()}"
    key = apps.account.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["read", "write"]}, headers=bearer(user)
    ).json()["key"]
    forged = mint_dev_token("not-the-secret-but-just-as-long-as-it", "ops-admin", admin=True)
    for credentials in (
        {},
        bearer(user),
        {"Authorization": f"Bearer {key}"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": "Bearer garbage"},
    ):
        for method, path, body in routes():
            resp = apps.admin.request(method, path, json=body, headers=credentials)
            assert resp.status_code == 404, (method, path, credentials, resp.text)
            assert resp.json()["error"] == "not_found"
            assert "WWW-Authenticate" not in resp.headers
    # Nothing changed for "someone".
    resp = apps.admin.get("/v1/admin/users/someone", headers=ADMIN)
    assert resp.status_code == 200
    assert resp.json()["overrides"] == {}


def test_admin_sets_limits_and_the_user_sees_them(stack: Any, apps: SimpleNamespace) -> None:
    from memlayer.settings import get_settings

    user = f"user-{uuid.uuid4()}"
    apps.memories.post("/v1/memories", json={"content": "hello"}, headers=bearer(user))

    resp = apps.admin.put(
        f"/v1/admin/users/{user}/limits", json={"daily_writes": 7, "max_bytes": 5000}, headers=ADMIN
    )
    assert resp.status_code == 200, resp.text
    defaults = get_settings()
    assert resp.json() == {
        "daily_writes": 7,
        "max_memories": defaults.default_max_memories,
        "max_bytes": 5000,
    }
    # A later patch merges into the earlier override.
    resp = apps.admin.put(f"/v1/admin/users/{user}/limits", json={"max_memories": 3}, headers=ADMIN)
    assert resp.json() == {"daily_writes": 7, "max_memories": 3, "max_bytes": 5000}

    me = apps.account.get("/v1/me", headers=bearer(user)).json()
    assert me["user_id"] == user
    assert me["limits"] == {"daily_writes": 7, "max_memories": 3, "max_bytes": 5000}
    assert me["usage"]["memories"] == 1
    assert me["usage"]["bytes"] == len(b"hello")
    assert me["usage"]["writes_today"] == 1

    summary = apps.admin.get(f"/v1/admin/users/{user}", headers=ADMIN).json()
    assert summary["usage"] == me["usage"]
    assert summary["limits"] == me["limits"]
    assert summary["overrides"] == {"daily_writes": 7, "max_bytes": 5000, "max_memories": 3}

    # Another user keeps the defaults.
    other = apps.account.get("/v1/me", headers=bearer(f"user-{uuid.uuid4()}")).json()
    assert other["limits"]["daily_writes"] == defaults.default_daily_writes


def test_invalid_limits_are_422(stack: Any, apps: SimpleNamespace) -> None:
    for body in ({"daily_writes": -1}, {"max_bytes": "lots"}):
        resp = apps.admin.put("/v1/admin/users/u1/limits", json=body, headers=ADMIN)
        assert resp.status_code == 422
        assert resp.json()["error"] == "validation_error"


def test_stats_count_items_and_queues(stack: Any, apps: SimpleNamespace) -> None:
    before = apps.admin.get("/v1/admin/stats", headers=ADMIN).json()
    drain(stack, "AnalyzeQueue")
    users = [f"user-{uuid.uuid4()}" for _ in range(2)]
    for user in users:
        for i in range(3):
            resp = apps.memories.post(
                "/v1/memories", json={"content": f"{i}"}, headers=bearer(user)
            )
            assert resp.status_code == 201
    stack.sqs.send_message(QueueUrl=stack.queues["EmbedDLQ"], MessageBody='{"memory_id": "x"}')

    stats = apps.admin.get("/v1/admin/stats", headers=ADMIN).json()
    assert stats["complete"] is True
    assert stats["items"]["memories"] == before["items"]["memories"] + 6
    assert stats["items"]["jobs"] == before["items"]["jobs"] + 6
    assert stats["users"] == before["users"] + 2
    assert stats["queues"]["analyze"]["visible"] == 6
    assert set(stats["queues"]) == {"analyze", "embed", "tasks"}
    assert set(stats["dlqs"]) == {
        "AnalyzeDLQ",
        "EmbedDLQ",
        "TasksDLQ",
        "UploadsDLQ",
        "CleanupDLQ",
    }
    assert stats["dlqs"]["EmbedDLQ"]["visible"] == before["dlqs"]["EmbedDLQ"]["visible"] + 1
    drain(stack, "EmbedDLQ")
    drain(stack, "AnalyzeQueue")


def test_dlq_peek_leaves_messages_and_redrive_moves_them(stack: Any, apps: SimpleNamespace) -> None:
    drain(stack, "AnalyzeDLQ")
    drain(stack, "AnalyzeQueue")
    bodies = [
        json.dumps({"memory_id": f"m{i}", "user_id": "u", "job_id": f"j{i}"}) for i in range(3)
    ]
    for body in bodies:
        stack.sqs.send_message(QueueUrl=stack.queues["AnalyzeDLQ"], MessageBody=body)
    stack.sqs.send_message(QueueUrl=stack.queues["CleanupDLQ"], MessageBody='{"source": "x"}')

    peek = apps.admin.get("/v1/admin/dlq?queue=AnalyzeDLQ&limit=10", headers=ADMIN)
    assert peek.status_code == 200, peek.text
    assert sorted(i["body"] for i in peek.json()["items"]) == sorted(bodies)
    assert all(i["queue"] == "AnalyzeDLQ" and i["receive_count"] >= 1 for i in peek.json()["items"])
    again = apps.admin.get("/v1/admin/dlq?queue=AnalyzeDLQ", headers=ADMIN).json()
    assert len(again["items"]) == 3  # peeking left them there, visible
    assert again["depths"]["AnalyzeDLQ"]["visible"] == 3

    everything = apps.admin.get("/v1/admin/dlq", headers=ADMIN).json()
    assert {i["queue"] for i in everything["items"]} == {"AnalyzeDLQ", "CleanupDLQ"}

    unknown = apps.admin.get("/v1/admin/dlq?queue=SomeoneElsesQueue", headers=ADMIN)
    assert unknown.status_code == 404

    resp = apps.admin.post("/v1/admin/dlq/redrive", json={"queue": "AnalyzeDLQ"}, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    assert resp.json()["moved"] == 3
    [result] = resp.json()["results"]
    assert result["source"] == "AnalyzeQueue" and result["failed"] == 0
    assert sorted(drain(stack, "AnalyzeQueue")) == sorted(bodies)
    assert drain(stack, "AnalyzeDLQ") == []

    # The Scheduler's DLQ is no queue's: nothing to redrive it to, and it stays.
    resp = apps.admin.post("/v1/admin/dlq/redrive", json={"queue": "CleanupDLQ"}, headers=ADMIN)
    [result] = resp.json()["results"]
    assert result["source"] is None and result["moved"] == 0 and result["detail"]
    assert drain(stack, "CleanupDLQ") == ['{"source": "x"}']
