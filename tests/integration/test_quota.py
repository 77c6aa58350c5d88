"""Quotas hold under concurrency: 50 parallel creates against a daily quota of 10 leave exactly
10 memories; the other 40 answer 429 with Retry-After."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import uuid
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import httpx
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
async def _parallel_creates(app: Any, headers: dict[str, str], n: int) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://memlayer.test") as client:
        return await asyncio.gather(
            *(
                client.post("/v1/memories", json={"content": f"note {i}"}, headers=headers)
                for i in range(n)
            )
        )


def test_parallel_creates_never_exceed_the_daily_quota(stack: Any) -> None:
    memories_app = load_function("memories").app
    admin_client = TestClient(load_function("admin").app)
    account_client = TestClient(load_function("account").app)
    user = f"user-{uuid.uuid4()}"
    resp = admin_client.put(
        f"/v1/admin/users/{user}/limits",
        json={"daily_writes": 10},
        headers=bearer("ops", admin=True),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["daily_writes"] == 10

    responses = asyncio.run(_parallel_creates(memories_app, bearer(user), 50))

    created = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(created) == 10
    assert len(refused) == 40
    for r in refused:
        assert r.status_code == 429
        assert r.json()["error"] == "quota_exceeded"
        assert int(r.headers["Retry-After"]) >= 1
    ids = {r.json()["id"] for r in created}
    assert len(ids) == 10

    listed = TestClient(memories_app).get("/v1/memories?limit=100", headers=bearer(user))
    assert {m["id"] for m in listed.json()["items"]} == ids
    me = account_client.get("/v1/me", headers=bearer(user)).json()
    assert me["usage"]["memories"] == 10
    assert me["usage"]["writes_today"] == 10
    assert me["limits"]["daily_writes"] == 10


def test_parallel_creates_never_exceed_the_memory_count_limit(stack: Any) -> None:
    from memlayer.errors import QuotaExceeded
    from memlayer.models import LimitsPatch
    from memlayer.services import admin, memories

    user = f"user-{uuid.uuid4()}"

    async def run() -> list[Any]:
        await admin.set_limits(user, LimitsPatch(max_memories=5))
        return await asyncio.gather(
            *(memories.create(user, memories.Draft(content=f"m{i}")) for i in range(20)),
            return_exceptions=True,
        )

    results = asyncio.run(run())
    assert sum(isinstance(r, memories.Created) for r in results) == 5
    assert sum(isinstance(r, QuotaExceeded) for r in results) == 15
    items = stack.ddb.query(
        TableName="memlayer-test",
        KeyConditionExpression="PK = :pk AND begins_with(SK, :m)",
        ExpressionAttributeValues={":pk": {"S": f"USER#{user}"}, ":m": {"S": "MEM#"}},
    )["Items"]
    assert len(items) == 5


def test_quota_is_per_user(stack: Any) -> None:
    memories_app = load_function("memories").app
    admin_client = TestClient(load_function("admin").app)
    limited, other = f"user-{uuid.uuid4()}", f"user-{uuid.uuid4()}"
    admin_client.put(
        f"/v1/admin/users/{limited}/limits",
        json={"daily_writes": 2},
        headers=bearer("ops", admin=True),
    )
    client = TestClient(memories_app)
    codes = [
        client.post("/v1/memories", json={"content": f"x{i}"}, headers=bearer(limited)).status_code
        for i in range(3)
    ]
    assert codes == [201, 201, 429]
    resp = client.post("/v1/memories", json={"content": "fine"}, headers=bearer(other))
    assert resp.status_code == 201
