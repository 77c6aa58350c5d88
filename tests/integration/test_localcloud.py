"""The local cloud (infra/localcloud) against a fixture template, plus the real template.

The fixture template (tests/fixtures/localcloud/template.yaml) has one HTTP function, an SQS
worker with a DLQ (maxReceiveCount 2), an S3 bucket notifying a queue, a schedule and a
WebSocket API; its tiny functions record what they receive in the fixture DynamoDB table.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from infra.localcloud import FunctionError, LocalCloud, build_stack
from infra.localcloud.__main__ import main as cli_main
from infra.localcloud.env import plan_environment
from infra.localcloud.schedules import next_fire
from infra.localcloud.stack import localize_urls
from infra.localcloud.template import NO_VALUE, Resolver, load_template

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "localcloud"
FIXTURE_TEMPLATE = FIXTURES / "template.yaml"
# Not the default "memlayer-local": the session cloud of tests/conftest.py may be running in
# this process, and moto's state is process-global.
STACK = "localcloud-fixture"
REAL_TEMPLATE = REPO / "template.yaml"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=20) as client:
        yield client


@pytest.fixture(scope="module")
def cloud():
    added = {"FIXTURE_SECRET": "from-developer", "EMPTY_FROM_DEVELOPER": ""}
    previous = {name: os.environ.get(name) for name in added}
    os.environ.update(added)
    # Failed SQS messages become visible again at once (the default is 1 s).
    local = LocalCloud(FIXTURE_TEMPLATE, port=0, stack_name=STACK, retry_visibility_seconds=0)
    before = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    try:
        with local:
            assert os.environ["ENVIRONMENT"] == "local"
            yield local
        # Stopping restores the environment the cloud started from.
        after = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        assert after == before
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def records(cloud: LocalCloud, kind: str) -> list:
    response = cloud.boto3_client("dynamodb").query(
        TableName=cloud.table_name("Table"),
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": f"rec#{kind}"}},
    )
    return [json.loads(item["data"]["S"]) for item in response["Items"]]


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# --------------------------------------------------------------------------- template


def test_real_template_resolves_every_function_and_route():
    raw = load_template(REAL_TEMPLATE)
    stack = build_stack(REAL_TEMPLATE)
    assert stack.warnings == []

    declared_functions = {
        lid for lid, r in raw["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    }
    assert set(stack.functions) == declared_functions
    for lid, spec in stack.functions.items():
        code_uri = raw["Resources"][lid]["Properties"]["CodeUri"]
        assert spec.code_dir == (REPO / code_uri).resolve(), lid
        module, _, attr = raw["Resources"][lid]["Properties"]["Handler"].rpartition(".")
        assert spec.handler_file() == spec.code_dir / f"{module.replace('.', '/')}.py"
        assert spec.handler_attribute == attr
        assert REPO / "layers" / "memlayer" in spec.layer_dirs, lid
        assert spec.timeout_s > 0 and spec.memory_mb >= 128
        assert spec.environment["TABLE_NAME"] == stack.resolver.physical_name("Table")

    declared_routes = {
        (lid, f"{e['Properties']['Method'].upper()} {e['Properties']['Path']}")
        for lid, r in raw["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
        for e in (r["Properties"].get("Events") or {}).values()
        if e["Type"] == "HttpApi"
    }
    assert {(r.function, r.route_key) for r in stack.routes} == declared_routes
    assert len(stack.routes) == len(declared_routes)

    # Every route is reachable: a concrete path for it matches that route and no other.
    for route in stack.routes:
        concrete = "/".join("x1" if s.startswith("{") else s for s in route.path.split("/"))
        matched, _ = stack.match_route(route.method, concrete)
        assert matched is not None
        assert (matched.function, matched.route_key) == (route.function, route.route_key)

    # Every SQS event source points at a local queue that has a DLQ.
    assert stack.sqs_sources
    for source in stack.sqs_sources:
        redrive = stack.queues[source.queue]["RedrivePolicy"]
        assert redrive["deadLetterTargetArn"] in {stack.queue_arn(q) for q in stack.queues}
    # Every WebSocket route resolves (Route -> Integration -> function).
    for api in stack.ws_apis.values():
        assert {"$connect", "$disconnect", "$default"} <= set(api.routes)
        assert all(r.function in stack.functions for r in api.routes.values())
    # The management endpoint env var is rewritten to the local server.
    ws_paths = {api.api_id: "/ws" for api in stack.ws_apis.values()}
    for spec in stack.functions.values():
        for value in spec.environment.values():
            local = localize_urls(value, "http://127.0.0.1:8787", ws_paths, set())
            assert "execute-api" not in local


def test_real_template_environment_plan_keeps_developer_secrets():
    stack = build_stack(REAL_TEMPLATE, aws_endpoint_url="http://127.0.0.1:5000")
    ws_paths = {api.api_id: "/ws" for api in stack.ws_apis.values()}
    current = {"ANTHROPIC_API_KEY": "sk-dev", "OPENAI_API_KEY": "", "EMBEDDINGS_PROVIDER": ""}
    plan = plan_environment(
        stack,
        moto_endpoint="http://127.0.0.1:5000",
        http_base="http://127.0.0.1:8787",
        ws_paths=ws_paths,
        current=current,
    )
    env = dict(current)
    plan.apply(env)
    assert env["ANTHROPIC_API_KEY"] == "sk-dev"  # empty template default did not clobber it
    assert "OPENAI_API_KEY" not in env and "EMBEDDINGS_PROVIDER" not in env
    assert "SUPABASE_JWT_SECRET" not in env
    assert env["ENVIRONMENT"] == "local"
    assert env["WS_MANAGEMENT_ENDPOINT"] == "http://127.0.0.1:8787/ws"
    assert env["ANALYZE_QUEUE_URL"].startswith("http://127.0.0.1:5000/123456789012/")
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"
    assert len(env["DLQ_URLS"].split(",")) == 5
    assert plan.warnings == []


def test_intrinsics(tmp_path):
    template = tmp_path / "t.yaml"
    template.write_text(
        """
Parameters:
  Env: {Type: String, Default: dev}
  Names: {Type: CommaDelimitedList, Default: "a,b,c"}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
Resources:
  Q: {Type: AWS::SQS::Queue, Properties: {QueueName: !Sub "${AWS::StackName}-q"}}
  Gone: {Type: AWS::SQS::Queue, Condition: IsProd}
Outputs:
  Sub:
    Value: !Sub ["${x}-${AWS::Region}-${Q.QueueName}-${!Literal}", {x: !Select [1, !Ref Names]}]
  Join: {Value: !Join ["|", !Split [",", "p,q"]]}
  If: {Value: !If [NotProd, yes-not-prod, no]}
  Arn: {Value: !GetAtt Q.Arn}
  Url: {Value: !Ref Q}
  NoVal: {Value: [!If [IsProd, x, !Ref AWS::NoValue], kept]}
"""
    )
    raw = load_template(template)
    resolver = Resolver(raw, {"Env": "dev"})
    out = {k: resolver.resolve(v["Value"]) for k, v in raw["Outputs"].items()}
    assert out["Sub"] == "b-us-east-1-memlayer-local-q-${Literal}"
    assert out["Join"] == "p|q"
    assert out["If"] == "yes-not-prod"
    assert out["Arn"] == "arn:aws:sqs:us-east-1:123456789012:memlayer-local-q"
    assert out["Url"] == "https://sqs.us-east-1.amazonaws.com/123456789012/memlayer-local-q"
    assert out["NoVal"] == ["kept"]
    assert resolver.ref("AWS::NoValue") is NO_VALUE
    assert not resolver.resource_exists("Gone")
    assert Resolver(raw, {"Env": "prod"}).resource_exists("Gone")
    with pytest.raises(ValueError, match=r"AllowedValues|no Default"):
        Resolver({"Parameters": {"P": {"Type": "String"}}, "Resources": {}})


def test_describe_cli_on_the_real_template(capsys):
    assert cli_main(["describe", "--template", str(REAL_TEMPLATE)]) == 0
    # Workers of the session's cloud may flush EMF metrics to stdout meanwhile.
    out = capsys.readouterr().out.splitlines(keepends=True)
    described = json.loads("".join(line for line in out if not line.startswith('{"_aws"')))
    assert described["warnings"] == []
    assert described["routes"]["GET /v1/health"] == "HealthFunction"
    assert described["websocket_apis"]["WebSocketApi"]["$connect"] == "WebSocketFunction"


def test_schedule_expressions():
    now = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC)  # a Monday
    assert next_fire("rate(1 hour)", now) == now + dt.timedelta(hours=1)
    assert next_fire("rate(5 minutes)", now) == now + dt.timedelta(minutes=5)
    assert next_fire("cron(0 12 * * ? *)", now) == now.replace(hour=12, minute=0)
    assert next_fire("cron(15 10 ? * SAT *)", now) == dt.datetime(
        2026, 1, 10, 10, 15, tzinfo=dt.UTC
    )
    assert next_fire("at(2020-01-01T00:00:00)", now) is None


# --------------------------------------------------------------------------- HTTP API


def test_http_route_gets_payload_v2_event_and_response(cloud, http):
    response = http.get(
        f"{cloud.base_url}/hello?x=1&x=2&y=",
        headers={"cookie": "s=1; t=2", "X-Custom": "v", "origin": "https://app.example.com"},
    )
    assert response.status_code == 200
    assert response.headers["x-fixture"] == "yes"
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2"]
    # CORS configured on the API replaces the function's own CORS headers.
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert response.headers["access-control-expose-headers"] == "x-fixture"

    payload = response.json()
    event = payload["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /hello"
    assert event["rawPath"] == "/hello"
    assert event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert event["cookies"] == ["s=1", "t=2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-custom"] == "v"
    assert event["isBase64Encoded"] is False
    assert "body" not in event and "pathParameters" not in event
    ctx = event["requestContext"]
    assert ctx["http"]["method"] == "GET" and ctx["http"]["path"] == "/hello"
    assert ctx["stage"] == "$default" and ctx["routeKey"] == "GET /hello"
    assert ctx["accountId"] == "123456789012" and ctx["apiId"]
    assert ctx["http"]["sourceIp"] == "127.0.0.1"
    assert abs(ctx["timeEpoch"] / 1000 - time.time()) < 60
    assert payload["context"]["function_name"] == f"{STACK}-ApiFunction"
    assert payload["context"]["memory_limit_in_mb"] == 256
    assert 0 < payload["context"]["remaining_ms"] <= 10_000


def test_http_connections_send_without_nagle_delay(cloud, http):
    # uvicorn writes a response's headers and body apart; on a kept-alive connection with
    # Nagle's algorithm on, the body waited for the client's delayed ACK (~40 ms a request).
    for _ in range(2):
        assert http.get(f"{cloud.base_url}/hello").status_code == 200
    connections = cloud._server.server_state.connections
    assert connections
    for connection in connections:
        sock = connection.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_path_parameters_precedence_and_greedy(cloud, http):
    item = http.get(f"{cloud.base_url}/items/abc%20d").json()["event"]
    assert item["routeKey"] == "GET /items/{id}"
    assert item["pathParameters"] == {"id": "abc d"}
    special = http.get(f"{cloud.base_url}/items/special").json()["event"]
    assert special["routeKey"] == "GET /items/special"
    proxy = http.delete(f"{cloud.base_url}/proxy/a/b/c").json()["event"]
    assert proxy["routeKey"] == "ANY /proxy/{proxy+}"
    assert proxy["pathParameters"] == {"proxy": "a/b/c"}


def test_bodies_text_and_binary(cloud, http):
    created = http.post(f"{cloud.base_url}/items", json={"a": 1})
    assert created.status_code == 201
    event = created.json()["event"]
    assert json.loads(event["body"]) == {"a": 1} and event["isBase64Encoded"] is False
    blob = bytes(range(256))
    binary = http.post(
        f"{cloud.base_url}/items",
        content=blob,
        headers={"content-type": "application/octet-stream"},
    ).json()["event"]
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == blob


def test_unknown_route_wrong_method_errors_and_inferred_response(cloud, http):
    for method, path in (
        ("GET", "/nope"),
        ("POST", "/hello"),
        ("GET", "/items/a/b"),
        ("GET", "/hello/"),
    ):
        response = http.request(method, cloud.base_url + path)
        assert response.status_code == 404, path
        assert response.json() == {"message": "Not Found"}
    boom = http.get(f"{cloud.base_url}/boom")
    assert boom.status_code == 500
    assert boom.json() == {"message": "Internal Server Error"}
    plain = http.get(f"{cloud.base_url}/plain")
    assert plain.status_code == 200 and plain.json() == {"ok": True}
    assert plain.headers["content-type"] == "application/json"


def test_cors_preflight(cloud, http):
    allowed = http.options(
        f"{cloud.base_url}/items/1",
        headers={
            "origin": "chrome-extension://fixture",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "chrome-extension://fixture"
    assert allowed.headers["access-control-allow-methods"] == "GET,POST,OPTIONS"
    assert allowed.headers["access-control-allow-headers"] == "authorization,content-type"
    assert allowed.headers["access-control-max-age"] == "600"
    denied = http.options(
        f"{cloud.base_url}/hello",
        headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
    )
    assert denied.status_code == 204
    assert "access-control-allow-origin" not in denied.headers


def test_environment_and_isolation(cloud, http):
    env = http.get(f"{cloud.base_url}/env").json()
    assert env["ENVIRONMENT"] == "local"
    assert env["MODE"] == "development"  # !If on a condition
    assert env["FIXTURE_SECRET"] == "from-developer"  # empty parameter did not clobber it
    assert env["EMPTY_FROM_DEVELOPER"] is None  # empty strings are unset
    assert env["WS_MANAGEMENT_ENDPOINT"] == cloud.management_endpoint
    assert env["AWS_ENDPOINT_URL"] == cloud.moto_endpoint
    assert env["WORK_QUEUE_URL"] == cloud.queue_url("WorkQueue")
    assert env["QUEUE_NAMES"] == f"{STACK}-WorkQueue,{STACK}-WorkDLQ"
    assert env["API_ONLY"] == "yes"
    # Both functions have a helpers.py; each sees its own.
    assert http.get(f"{cloud.base_url}/helpers").text == "api-helpers"
    # A resource whose Condition is false does not exist locally.
    assert "ProdOnlyQueue" not in cloud.stack.queues
    urls = cloud.boto3_client("sqs").list_queues().get("QueueUrls", [])
    assert cloud.queue_url("WorkQueue") in urls
    assert not any("ProdOnlyQueue" in url for url in urls)


def test_invoke_by_logical_id_or_directory(cloud):
    event = json.loads((FIXTURES / "events" / "hello.json").read_text())
    by_dir = cloud.invoke("api", event)
    by_id = cloud.invoke("ApiFunction", event)
    assert by_dir["statusCode"] == by_id["statusCode"] == 200
    with pytest.raises(FunctionError, match="boom"):
        cloud.invoke("functions/api", {**event, "rawPath": "/boom"})
    with pytest.raises(KeyError):
        cloud.invoke("NoSuchFunction", {})


# --------------------------------------------------------------------------- SQS / S3


def test_sqs_partial_batch_failure_redrives_poison_to_dlq(cloud):
    sqs = cloud.boto3_client("sqs")
    bodies = ["good-1", "good-2", "poison-1", "good-3"]
    sqs.send_message_batch(
        QueueUrl=cloud.queue_url("WorkQueue"),
        Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)],
    )
    cloud.drain(timeout=15)

    ok = records(cloud, "worker-ok")
    assert sorted(r["record"]["body"] for r in ok) == ["good-1", "good-2", "good-3"]
    first = ok[0]["record"]
    assert first["eventSource"] == "aws:sqs"
    assert first["eventSourceARN"] == cloud.queue_arn("WorkQueue")
    assert first["awsRegion"] == "us-east-1"
    assert {"ApproximateReceiveCount", "SentTimestamp", "SenderId"} <= set(first["attributes"])
    assert first["messageId"] and first["receiptHandle"] and first["md5OfBody"]
    assert ok[0]["helpers"] == "worker-helpers"

    attempts = [r for r in records(cloud, "worker-attempt") if r["body"] == "poison-1"]
    assert [a["receive_count"] for a in attempts] == ["1", "2"]  # maxReceiveCount 2
    dlq = sqs.receive_message(QueueUrl=cloud.queue_url("WorkDLQ"), MaxNumberOfMessages=10)
    assert [m["Body"] for m in dlq.get("Messages", [])] == ["poison-1"]
    counts = cloud.queue_counts()["WorkQueue"]
    assert counts == {"visible": 0, "in_flight": 0, "delayed": 0}


def test_queue_counts_are_what_get_queue_attributes_reports(cloud):
    sqs = cloud.boto3_client("sqs")
    url = cloud.queue_url("WorkDLQ")  # no pump reads it
    for i in range(4):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=60)
    assert len(received["Messages"]) == 3
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    names.append("ApproximateNumberOfMessagesDelayed")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    keys = ("visible", "in_flight", "delayed")
    expected = {key: int(attrs[name]) for key, name in zip(keys, names, strict=True)}
    assert cloud.queue_counts(["WorkDLQ"]) == {"WorkDLQ": expected}
    assert expected["visible"] >= 1 and expected["in_flight"] >= 3 and expected["delayed"] == 1
    sqs.purge_queue(QueueUrl=url)


def test_s3_put_notifies_queue_and_function(cloud):
    s3 = cloud.boto3_client("s3")
    bucket = cloud.bucket_name("Bucket")
    s3.put_object(Bucket=bucket, Key="uploads/doc 1.txt", Body=b"hello")
    s3.put_object(Bucket=bucket, Key="other/ignored.txt", Body=b"x")  # filtered by prefix
    cloud.drain(timeout=10)
    seen = records(cloud, "extract")
    assert not any(r.get("Event") == "s3:TestEvent" for r in seen)  # dropped by the pump
    s3_records = [rec for r in seen for rec in r["Records"]]
    assert len(s3_records) == 1
    assert s3_records[0]["eventName"].startswith("ObjectCreated:")
    assert s3_records[0]["s3"]["bucket"]["name"] == bucket
    assert s3_records[0]["s3"]["object"]["key"] == "uploads/doc+1.txt"
    cors = s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]
    assert cors["AllowedMethods"] == ["PUT"] and cors["MaxAgeSeconds"] == 60


# --------------------------------------------------------------------------- WebSocket


def test_websocket_connect_message_management_api_and_disconnect(cloud):
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{cloud.ws_url}?token=bad", open_timeout=5)
    assert refused.value.response.status_code == 401

    management = cloud.boto3_client("apigatewaymanagementapi")
    with connect(f"{cloud.ws_url}?token=good", open_timeout=5) as ws:
        ws.send(json.dumps({"action": "anything", "n": 1}))
        reply = json.loads(ws.recv(timeout=5))  # sent by the function via the management API
        connection_id = reply["connectionId"]
        assert json.loads(reply["echo"]) == {"action": "anything", "n": 1}

        management.post_to_connection(ConnectionId=connection_id, Data=b"from-test")
        assert ws.recv(timeout=5) == "from-test"
        info = management.get_connection(ConnectionId=connection_id)
        assert info["Identity"]["SourceIp"] == "127.0.0.1"
        with pytest.raises(management.exceptions.GoneException):
            management.post_to_connection(ConnectionId="NoSuchConnection=", Data=b"x")

    events = wait_for(
        lambda: (
            (e := [r for r in records(cloud, "ws") if r["connectionId"] == connection_id])
            and e[-1]["route"] == "$disconnect"
            and e
        )
    )
    assert [e["route"] for e in events] == ["$connect", "$default", "$disconnect"]
    assert [e["eventType"] for e in events] == ["CONNECT", "MESSAGE", "DISCONNECT"]
    assert events[0]["query"] == {"token": "good"}
    assert events[0]["stage"] == "dev"
    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId=connection_id, Data=b"late")


# --------------------------------------------------------------------------- schedules / CLI


def test_schedule_fires_only_on_demand(cloud, http):
    assert records(cloud, "cron") == []  # nothing fires at startup
    response = http.post(f"{cloud.base_url}/_local/schedules/CronFunction")
    assert response.status_code == 200
    fired = response.json()["fired"]
    assert fired == [
        {
            "schedule": f"{STACK}-CronFunction-Hourly",
            "function": "CronFunction",
            "result": {"cleaned": 0, "function": f"{STACK}-CronFunction"},
        }
    ]
    (event,) = records(cloud, "cron")
    assert event["source"] == "aws.scheduler" and event["detail-type"] == "Scheduled Event"
    assert cloud.fire_schedule("Hourly")[0]["function"] == "CronFunction"
    assert http.post(f"{cloud.base_url}/_local/schedules/ApiFunction").status_code == 404


def test_clouds_sharing_a_process_and_ensure_resources(cloud):
    twin = LocalCloud(FIXTURE_TEMPLATE, port=0, stack_name=STACK, pumps=False, schedules=False)
    with pytest.raises(RuntimeError, match="stack name"):
        twin.start()
    assert os.environ["WORK_QUEUE_URL"] == cloud.queue_url("WorkQueue")  # untouched
    dynamodb = cloud.boto3_client("dynamodb")
    dynamodb.delete_table(TableName=cloud.table_name("Table"))  # as a moto reset would
    cloud.ensure_resources()
    table = dynamodb.describe_table(TableName=cloud.table_name("Table"))["Table"]
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == "GSI1"


def test_cli_invoke_prints_the_result():
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.localcloud",
            "invoke",
            "--template",
            str(FIXTURE_TEMPLATE),
            "functions/api",
            str(FIXTURES / "events" / "hello.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["event"]["rawPath"] == "/hello"
