"""IAM in the local cloud (infra/localcloud/iam.py): each function runs with its role as
`sam deploy` creates it, and a call the role does not allow fails as it would on AWS.

The committed template passing every other integration test is the other half of the proof:
the session cloud of tests/conftest.py enforces IAM too."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from infra.localcloud import FunctionError, LocalCloud
from infra.localcloud.iam import (
    ArnContext,
    Role,
    Statement,
    access_denied,
    acting_as,
    required_permissions,
)
from infra.localcloud.pump import PollerQueue, sqs_record
from tests.conftest import CLOUD_ENV, JWT_SECRET

ROOT = Path(__file__).resolve().parents[2]
CTX = ArnContext("us-east-1", "123456789012", ws_endpoints={"http://127.0.0.1:1/ws": ("a1", "dev")})
TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/t"


def role(*statements: dict[str, Any]) -> Role:
    return Role("Fn", "stack-Fn", "stack-FnRole", CTX, [Statement.parse(s) for s in statements])


# --------------------------------------------------------------------------- evaluation


def test_an_explicit_deny_wins_and_nothing_is_allowed_by_default() -> None:
    r = role(
        {"Effect": "Allow", "Action": "dynamodb:*", "Resource": [TABLE, f"{TABLE}/index/*"]},
        {"Effect": "Deny", "Action": "dynamodb:DeleteItem", "Resource": "*"},
    )
    assert r.allows("dynamodb:UpdateItem", TABLE)
    assert r.allows("dynamodb:query", f"{TABLE}/index/GSI1")  # actions ignore case
    assert not r.allows("dynamodb:DeleteItem", TABLE)
    assert not r.allows("dynamodb:GetItem", TABLE + "2")  # resources do not
    assert not r.allows("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:q")


def test_not_action_not_resource_and_conditions() -> None:
    r = role(
        {"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "arn:aws:s3:::b/*"},
        {"Effect": "Allow", "Action": "sqs:*", "NotResource": "arn:aws:sqs:*:*:private-?"},
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*", "Condition": {"x": {}}},
    )
    assert r.allows("s3:GetObject", "arn:aws:s3:::b/k")
    assert not r.allows("s3:DeleteObject", "arn:aws:s3:::b/k")
    assert r.allows("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:public")
    assert not r.allows("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:private-1")
    assert not r.allows("kms:Decrypt", "k")  # a Condition is never taken as granted


def test_requests_become_the_actions_and_resources_aws_checks() -> None:
    transact = {
        "TransactItems": [
            {"Put": {"TableName": "t", "Item": {}}},
            {"ConditionCheck": {"TableName": "u", "Key": {}}},
        ]
    }
    assert required_permissions("dynamodb", "TransactWriteItems", transact, CTX) == [
        ("dynamodb:PutItem", TABLE),
        ("dynamodb:ConditionCheckItem", TABLE[:-1] + "u"),
    ]
    query = {"TableName": "t", "IndexName": "GSI1"}
    assert required_permissions("dynamodb", "Query", query, CTX) == [
        ("dynamodb:Query", f"{TABLE}/index/GSI1")
    ]
    batch = {"QueueUrl": "http://127.0.0.1:5000/123456789012/q", "Entries": []}
    assert required_permissions("sqs", "SendMessageBatch", batch, CTX) == [
        ("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:q")
    ]
    assert required_permissions("s3", "HeadObject", {"Bucket": "b", "Key": "k"}, CTX) == [
        ("s3:GetObject", "arn:aws:s3:::b/k")
    ]
    push = {"ConnectionId": "c1", "Data": b"{}"}
    assert required_permissions(
        "execute-api", "PostToConnection", push, CTX, "http://127.0.0.1:1/ws"
    ) == [
        (
            "execute-api:ManageConnections",
            "arn:aws:execute-api:us-east-1:123456789012:a1/dev/POST/@connections/c1",
        )
    ]


@pytest.mark.parametrize(
    ("prefix", "code", "status"),
    [("dynamodb", "AccessDeniedException", 400), ("s3", "AccessDenied", 403)],
)
def test_the_refusal_is_shaped_like_aws(prefix: str, code: str, status: int) -> None:
    error = access_denied(role(), prefix, "Op", f"{prefix}:Op", TABLE)
    assert error.response["Error"]["Code"] == code
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error.response["Error"]["Message"] == (
        "User: arn:aws:sts::123456789012:assumed-role/stack-FnRole/stack-Fn is not authorized "
        f"to perform: {prefix}:Op on resource: {TABLE} because no identity-based policy "
        f"allows the {prefix}:Op action"
    )


# --------------------------------------------------------------------------- the real template


def test_the_session_cloud_gives_each_function_its_deployed_role(cloud: LocalCloud) -> None:
    retrieval = cloud.roles["RetrievalFunction"]
    table = cloud.stack.resolver.arn("Table")  # type: ignore[union-attr]
    assert retrieval.allows("dynamodb:UpdateItem", table)  # the rate-limit counter
    assert not retrieval.allows("dynamodb:DeleteItem", table)
    assert "AWSLambdaBasicExecutionRole" in retrieval.policy_names
    sqs = cloud.boto3_client("sqs")
    url = cloud.queue_url("AnalyzeDLQ")
    with acting_as(retrieval), pytest.raises(ClientError) as denied:
        sqs.receive_message(QueueUrl=url)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert "sqs:ReceiveMessage" in denied.value.response["Error"]["Message"]
    sqs.get_queue_attributes(QueueUrl=url)  # outside a function: not checked


def test_the_poller_receives_and_deletes_with_the_function_s_role(cloud: LocalCloud) -> None:
    options = cloud.stack.resolver.options  # type: ignore[union-attr]
    sqs = cloud.boto3_client("sqs")
    url = cloud.queue_url("AnalyzeDLQ")  # no pump reads it (other tests may leave messages)
    arn = cloud.stack.queue_arn("AnalyzeDLQ")  # type: ignore[union-attr]
    before = cloud.queue_counts(["AnalyzeDLQ"])["AnalyzeDLQ"]
    body = f"poison {uuid.uuid4()}"
    sqs.send_message(QueueUrl=url, MessageBody=body)

    def poller(function: str) -> PollerQueue:
        role = cloud.roles[function]
        return PollerQueue(
            url, arn, account_id=options.account_id, region=options.region, role=role
        )

    retrieval = cloud.roles["RetrievalFunction"]
    denied_before = len(retrieval.denied)
    with pytest.raises(ClientError) as denied:
        poller("RetrievalFunction").receive(10, 0)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert retrieval.denied[denied_before:] == [("sqs:ReceiveMessage", arn)]

    admin = poller("AdminFunction")  # the DLQ redrive reads it
    received, receives = [], 0
    while not any(m.body == body for m in received):
        batch = admin.receive(10, 0)
        receives += 1
        assert batch, "the message sent is not on the queue"
        received += batch
    (mine,) = [m for m in received if m.body == body]
    record = sqs_record(mine, arn, options.region)
    assert record["body"] == body and record["attributes"]["ApproximateReceiveCount"] == "1"
    admin.delete([mine])
    others = [m for m in received if m is not mine]
    if others:
        admin.show_again(others, 0)
    # what bench.calls reads: one request per call, ten entries a request
    assert admin.calls == {
        "ReceiveMessage": receives,
        "DeleteMessageBatch": 1,
        **({"ChangeMessageVisibilityBatch": -(-len(others) // 10)} if others else {}),
    }
    assert cloud.queue_counts(["AnalyzeDLQ"])["AnalyzeDLQ"] == before


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _without_policies(tmp_path: Path) -> Path:
    """template.yaml with every function's Policies removed (paths made absolute)."""
    text = (ROOT / "template.yaml").read_text()
    text = re.sub(r"(CodeUri|ContentUri): (\S+)", lambda m: f"{m[1]}: {ROOT / m[2]}", text)
    text = re.sub(r"\n      Policies:\n(?:        .*\n)+", "\n", text)
    assert "Policies:" not in text
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return path


def test_functions_without_their_policies_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every HTTP function answers a clean 5xx and the logs name the denied action; the
    cleanup worker fails its run."""
    from memlayer.auth.jwt import mint_dev_token
    from tests.conftest import reset_caches

    template = _without_policies(tmp_path)
    token = mint_dev_token(JWT_SECRET, "user-iam", admin=True)
    headers = {"Authorization": f"Bearer {token}"}
    answers: dict[str, httpx.Response] = {}
    function_log = _Collect()
    logging.getLogger("memlayer").addHandler(function_log)  # Powertools' logger
    with LocalCloud(
        template, port=0, env_overrides=CLOUD_ENV, stack_name="memlayer-iam", pumps=False
    ) as local:
        reset_caches()
        try:
            assert local.stack is not None
            with httpx.Client(base_url=local.base_url, headers=headers, timeout=30) as http:
                for route in local.stack.routes:
                    if route.function not in answers:
                        path = re.sub(r"\{[^}]+\}", "x", route.path)
                        answers[route.function] = http.request(route.method, path, json={})
            with pytest.raises(FunctionError):
                local.invoke("CleanupFunction", {})
        finally:
            reset_caches()
            logging.getLogger("memlayer").removeHandler(function_log)
    assert set(answers) == {  # every HTTP function
        "HealthFunction",
        "MemoriesFunction",
        "CaptureFunction",
        "RetrievalFunction",
        "UploadsFunction",
        "AccountFunction",
        "AdminFunction",
        "McpFunction",
    }
    # Health answers by design, saying it cannot reach the table.
    assert answers.pop("HealthFunction").json()["services"]["table"] == "unreachable"
    for function, response in answers.items():
        assert response.status_code == 500, (function, response.text)
        assert set(response.json()) == {"error", "detail", "request_id"}, function
    assert answers["RetrievalFunction"].json()["error"] == "internal_error"
    # The function's own log and the local cloud's name the action (the first one refused:
    # reading the JWT secret).
    denied = "not authorized to perform: secretsmanager:GetSecretValue"
    assert any(denied in line for line in function_log.lines)
    assert any("RetrievalFunction denied secretsmanager:Get" in m for m in caplog.messages)
    assert any(m.startswith("IAM: CleanupFunction denied") for m in caplog.messages)


# --------------------------------------------------------------------------- secrets


def test_secrets_come_from_secrets_manager_once_per_max_age(cloud: LocalCloud) -> None:
    """The local cloud moved SUPABASE_JWT_SECRET into Secrets Manager, as a deploy does; the
    code reads it by ARN, and a warm container does not read it again per request."""
    import os

    from memlayer import secrets
    from memlayer.settings import get_settings

    assert "SUPABASE_JWT_SECRET" not in os.environ
    arn = get_settings().supabase_jwt_secret_arn
    assert arn == cloud.stack.resolver.arn("JwtSecret")  # type: ignore[union-attr]
    reads: list[str] = []
    client = secrets._provider().client
    count = lambda **_: reads.append("read")  # noqa: E731
    client.meta.events.register("before-call.secrets-manager.GetSecretValue", count)
    secrets._provider().clear_cache()
    try:
        for _ in range(3):
            value = secrets.value("supabase_jwt_secret")
            assert value is not None and value.get_secret_value() == JWT_SECRET
    finally:
        client.meta.events.unregister("before-call.secrets-manager.GetSecretValue", count)
    assert reads == ["read"]
    with acting_as(cloud.roles["HealthFunction"]), pytest.raises(ClientError):
        client.get_secret_value(SecretId=arn)  # Health holds no secret


def test_a_function_renews_only_the_secrets_it_read(
    cloud: LocalCloud, caplog: pytest.LogCaptureFixture
) -> None:
    """The local cloud runs every function in one process: the analyze worker, which holds no
    JWT secret, must not renew the one the memories function read (with its own role it would be
    refused, every invocation once the value is older than MAX_AGE_SECONDS)."""
    from memlayer import secrets

    reads: list[str] = []
    client = secrets._provider().client
    count = lambda **_: reads.append("read")  # noqa: E731
    client.meta.events.register("before-call.secrets-manager.GetSecretValue", count)
    try:
        with acting_as(cloud.roles["MemoriesFunction"]):
            secrets.refresh("MemoriesFunction")
            assert secrets.value("supabase_jwt_secret") is not None
        secrets._provider().clear_cache()  # as if older than MAX_AGE_SECONDS
        reads.clear()
        with (
            caplog.at_level(logging.INFO, logger="localcloud"),
            acting_as(cloud.roles["AnalyzeFunction"]),
        ):
            secrets.refresh("AnalyzeFunction")
        # nothing asked with the analyze role (the local cloud would log the refusal)
        assert not [m for m in caplog.messages if "denied secretsmanager" in m]
        assert reads == []
        with acting_as(cloud.roles["MemoriesFunction"]):
            secrets.refresh("MemoriesFunction")
        assert reads == ["read"]  # the memories function renewed its own
    finally:
        client.meta.events.unregister("before-call.secrets-manager.GetSecretValue", count)
