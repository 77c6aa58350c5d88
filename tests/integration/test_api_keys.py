"""API keys: shown once, stored only as a hash, scoped (read vs write), revocable, and managed
only from a signed-in session."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import uuid
from datetime import timedelta
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
@pytest.fixture(scope="module")
def apps(stack: Any) -> SimpleNamespace:
    return SimpleNamespace(
        account=TestClient(load_function("account").app),
        memories=TestClient(load_function("memories").app),
    )


def key_header(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create_key(apps: SimpleNamespace, user: str, scopes: list[str], name: str = "cli") -> Any:
    resp = apps.account.post(
        "/v1/api-keys", json={"name": name, "scopes": scopes}, headers=bearer(user)
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def table_dump(stack: Any) -> str:
    items = stack.ddb.scan(TableName="memlayer-test")["Items"]
    return json.dumps(items, default=str)


def test_key_is_shown_once_and_stored_only_as_a_hash(stack: Any, apps: SimpleNamespace) -> None:
    user = f"user-{uuid.uuid4()}"
    created = create_key(apps, user, ["read"], name="  my   laptop ")
    key = created["key"]
    assert key.startswith("mlk_") and len(key) >= 4 + 43
    assert created["name"] == "my laptop"
    assert created["scopes"] == ["read"]
    assert created["revoked"] is False and created["last_used_at"] is None
    assert key.startswith(created["prefix"]) and len(created["prefix"]) < len(key) // 2

    listed = apps.account.get("/v1/api-keys", headers=bearer(user))
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert item["id"] == created["id"]
    assert "key" not in item
    secret_part = key[len(created["prefix"]) :]
    assert secret_part not in listed.text
    assert secret_part not in table_dump(stack)  # only the hash is stored


def test_read_key_can_read_but_not_write(stack: Any, apps: SimpleNamespace) -> None:
    user = f"user-{uuid.uuid4()}"
    apps.memories.post("/v1/memories", json={"content": "first"}, headers=bearer(user))
    key = create_key(apps, user, ["read"])["key"]

    listed = apps.memories.get("/v1/memories", headers=key_header(key))
    assert listed.status_code == 200
    assert [m["content"] for m in listed.json()["items"]] == ["first"]
    me = apps.account.get("/v1/me", headers=key_header(key))
    assert me.status_code == 200 and me.json()["user_id"] == user

    denied = apps.memories.post("/v1/memories", json={"content": "x"}, headers=key_header(key))
    assert denied.status_code == 403
    assert denied.json()["error"] == "forbidden"
    assert len(apps.memories.get("/v1/memories", headers=bearer(user)).json()["items"]) == 1


def test_write_key_can_write(stack: Any, apps: SimpleNamespace) -> None:
    user = f"user-{uuid.uuid4()}"
    created = create_key(apps, user, ["write"])  # write implies read
    assert created["scopes"] == ["read", "write"]
    resp = apps.memories.post(
        "/v1/memories", json={"content": "via key"}, headers=key_header(created["key"])
    )
    assert resp.status_code == 201
    mine = apps.memories.get("/v1/memories", headers=bearer(user)).json()["items"]
    assert [m["content"] for m in mine] == ["via key"]


def test_revoked_key_is_refused(stack: Any, apps: SimpleNamespace) -> None:
    user = f"user-{uuid.uuid4()}"
    created = create_key(apps, user, ["read", "write"])
    assert apps.memories.get("/v1/memories", headers=key_header(created["key"])).status_code == 200

    resp = apps.account.delete(f"/v1/api-keys/{created['id']}", headers=bearer(user))
    assert resp.status_code == 204
    refused = apps.memories.get("/v1/memories", headers=key_header(created["key"]))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert refused.json()["error"] == "unauthorized"
    [item] = apps.account.get("/v1/api-keys", headers=bearer(user)).json()["items"]
    assert item["revoked"] is True and item["revoked_at"]
    # Revoking again is harmless.
    assert (
        apps.account.delete(f"/v1/api-keys/{created['id']}", headers=bearer(user)).status_code
        == 204
    )


def test_unknown_or_malformed_keys_are_401(stack: Any, apps: SimpleNamespace) -> None:
    for token in ("mlk_" + "A" * 43, "mlk_", "mlk_" + "x" * 500):
        resp = apps.memories.get("/v1/memories", headers=key_header(token))
        assert resp.status_code == 401, token


def test_another_users_key_cannot_be_revoked(stack: Any, apps: SimpleNamespace) -> None:
    owner, other = f"user-{uuid.uuid4()}", f"user-{uuid.uuid4()}"
    created = create_key(apps, owner, ["read"])
    resp = apps.account.delete(f"/v1/api-keys/{created['id']}", headers=bearer(other))
    assert resp.status_code == 404
    assert apps.account.get("/v1/api-keys", headers=bearer(other)).json()["items"] == []
    assert apps.memories.get("/v1/memories", headers=key_header(created["key"])).status_code == 200
    missing = apps.account.delete("/v1/api-keys/not-an-id", headers=bearer(owner))
    assert missing.status_code == 404


def test_api_keys_cannot_manage_keys_or_erase(stack: Any, apps: SimpleNamespace) -> None:
    user = f"user-{uuid.uuid4()}"
    created = create_key(apps, user, ["read", "write"])
    headers = key_header(created["key"])
    attempts = [
        apps.account.post(
            "/v1/api-keys", json={"name": "more", "scopes": ["read"]}, headers=headers
        ),
        apps.account.get("/v1/api-keys", headers=headers),
        apps.account.delete(f"/v1/api-keys/{created['id']}", headers=headers),
        apps.account.delete("/v1/me", headers=headers),
    ]
    assert [r.status_code for r in attempts] == [403, 403, 403, 403]
    assert len(apps.account.get("/v1/api-keys", headers=bearer(user)).json()["items"]) == 1


def test_invalid_key_requests_are_422(stack: Any, apps: SimpleNamespace) -> None:
    user = f"user-{uuid.uuid4()}"
    for body in ({"name": "x", "scopes": ["admin"]}, {"name": "   "}, {"scopes": ["read"]}):
        resp = apps.account.post("/v1/api-keys", json=body, headers=bearer(user))
        assert resp.status_code == 422, body
        assert resp.json()["error"] == "validation_error"


def test_last_used_is_recorded_at_most_once_a_minute(stack: Any, apps: SimpleNamespace) -> None:
    from memlayer.ids import utcnow
    from memlayer.services import api_keys
    from memlayer.storage import get_store

    user = f"user-{uuid.uuid4()}"

    async def run() -> tuple[Any, Any, bool, bool]:
        record, key = await api_keys.create_api_key(user, "ci", ["read"])
        principal = await api_keys.authenticate_api_key(key)
        assert principal.user_id == user and principal.via == "api_key"
        assert principal.scopes == frozenset({"read"}) and not principal.is_admin
        store: Any = get_store()
        first = (await store.get_api_key(user, record.id)).last_used_at
        await api_keys.authenticate_api_key(key)
        second = (await store.get_api_key(user, record.id)).last_used_at
        soon = await store.touch_api_key(user, record.id, utcnow() + timedelta(seconds=10))
        later = await store.touch_api_key(user, record.id, utcnow() + timedelta(seconds=61))
        return first, second, soon, later

    first, second, soon, later = asyncio.run(run())
    assert first is not None and first == second
    assert soon is False and later is True


def test_key_count_is_capped(
    stack: Any, apps: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memlayer.errors import Conflict
    from memlayer.services import api_keys

    monkeypatch.setattr(api_keys, "MAX_ACTIVE_KEYS", 3)
    user = f"user-{uuid.uuid4()}"

    async def run() -> None:
        for i in range(api_keys.MAX_ACTIVE_KEYS):
            await api_keys.create_api_key(user, f"k{i}", ["read"])
        with pytest.raises(Conflict):
            await api_keys.create_api_key(user, "one too many", ["read"])

    asyncio.run(run())
