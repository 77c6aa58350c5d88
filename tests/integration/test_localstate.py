"""Durable local state: what `make dev` stored is there after a restart, a SIGTERM stops
`serve` promptly after saving, and a damaged snapshot never prevents a start."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
from moto import mock_aws

from infra.localcloud import LocalCloud
from infra.localcloud.motofixes import serialize_moto_dynamodb
from infra.localcloud.state import PREVIOUS, SNAPSHOT, LocalState
from tests.conftest import CLOUD_ENV, JWT_SECRET, ROOT, make_user, reset_caches, start_serve

STACK = "memlayer-state"


def _cloud(state_dir: Path) -> LocalCloud:
    return LocalCloud(
        ROOT / "template.yaml",
        port=0,
        env_overrides=CLOUD_ENV,
        schedules=False,
        stack_name=STACK,
        state_dir=state_dir,
    )


def _ready(http: httpx.Client, memory_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        memory = http.get(f"/v1/memories/{memory_id}").json()
        if memory["status"] == "ready" or time.monotonic() > deadline:
            return memory  # type: ignore[no-any-return]
        time.sleep(0.1)


def test_items_objects_and_messages_survive_a_restart(tmp_path):
    state_dir = tmp_path / "state"
    try:
        ids, user = _store_things(state_dir)
        assert (state_dir / SNAPSHOT).exists()
        _check_things(state_dir, ids, user)
    finally:
        reset_caches()  # memlayer's settings and clients must not point at this stack


def _store_things(state_dir: Path) -> tuple[list[str], Any]:
    with _cloud(state_dir) as cloud:
        reset_caches()
        user = make_user(cloud)
        ids = []
        for text in ("The staging database listens on port 6543", "Sourdough needs 70% water"):
            response = user.http.post("/v1/memories", json={"content": text})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        assert all(_ready(user.http, i)["status"] == "ready" for i in ids)

        s3 = cloud.boto3_client("s3")
        bucket = cloud.bucket_name("UploadsBucket")
        s3.put_object(Bucket=bucket, Key="kept/a b.txt", Body=b"\x00bytes\xff", ContentType="x/y")
        sqs, dlq = cloud.boto3_client("sqs"), cloud.queue_url("AnalyzeDLQ")
        sqs.send_message(QueueUrl=dlq, MessageBody="was in flight")
        sqs.send_message(QueueUrl=dlq, MessageBody="delayed", DelaySeconds=600)
        got = sqs.receive_message(QueueUrl=dlq, VisibilityTimeout=600)["Messages"]
        assert [m["Body"] for m in got] == ["was in flight"]
    return ids, user


def _check_things(state_dir: Path, ids: list[str], user: Any) -> None:
    with _cloud(state_dir) as cloud:
        reset_caches()
        user.http.base_url = httpx.URL(cloud.base_url)
        for memory_id in ids:
            memory = user.http.get(f"/v1/memories/{memory_id}").json()
            assert memory["status"] == "ready"
        found = user.http.post("/v1/search", json={"query": "staging database port"}).json()
        assert found["items"][0]["memory"]["id"] == ids[0]

        s3 = cloud.boto3_client("s3")
        obj = s3.get_object(Bucket=cloud.bucket_name("UploadsBucket"), Key="kept/a b.txt")
        assert obj["Body"].read() == b"\x00bytes\xff"
        assert obj["ContentType"] == "x/y"
        sqs, dlq = cloud.boto3_client("sqs"), cloud.queue_url("AnalyzeDLQ")
        again = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in again] == ["was in flight"]  # the delayed one still waits
        counts = cloud.queue_counts(["AnalyzeDLQ"])["AnalyzeDLQ"]
        assert counts == {"visible": 0, "in_flight": 1, "delayed": 1}
        new = user.http.post("/v1/memories", json={"content": "written after the restart"})
        assert new.status_code == 201


def test_sigterm_stops_serve_promptly_and_the_state_is_there_next_time(tmp_path):
    from memlayer.auth.jwt import mint_dev_token

    state_dir = tmp_path / "state"
    headers = {"Authorization": f"Bearer {mint_dev_token(JWT_SECRET, 'sigterm-user')}"}
    process, base = start_serve(state_dir)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            created = http.post("/v1/memories", json={"content": "kept across SIGTERM"})
            assert created.status_code == 201, created.text
            memory_id = created.json()["id"]
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        assert time.monotonic() - started < 10
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    process, base = start_serve(state_dir)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            memory = _ready(http, memory_id)
            assert memory["content"] == "kept across SIGTERM"
            assert memory["status"] == "ready"  # its queued enrichment resumed, too
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def _table(client: Any, name: str) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def _keys(client: Any) -> list[str]:
    return sorted(i["SK"]["S"] for i in client.scan(TableName="t")["Items"])


def test_a_damaged_snapshot_falls_back_to_the_previous_one_or_starts_empty(tmp_path):
    serialize_moto_dynamodb()  # counts the writes the saver looks for
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _table(client, "t")
        state = LocalState(tmp_path, tables={"t"}, buckets=(), queues=())
        client.put_item(TableName="t", Item={"PK": {"S": "u"}, "SK": {"S": "first"}})
        assert state.save()
        assert not state.save()  # nothing changed: nothing written
        client.put_item(
            TableName="t", Item={"PK": {"S": "u"}, "SK": {"S": "second"}, "v": {"B": b"\x00\x01"}}
        )
        assert state.save()
    assert (tmp_path / PREVIOUS).exists()

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _table(client, "t")
        report = LocalState(tmp_path, tables={"t"}).restore()
        assert report.problems == [] and report.items == 2
        assert _keys(client) == ["first", "second"]
        item = client.get_item(TableName="t", Key={"PK": {"S": "u"}, "SK": {"S": "second"}})
        assert item["Item"]["v"] == {"B": b"\x00\x01"}

    current = tmp_path / SNAPSHOT
    current.write_bytes(current.read_bytes()[:-40])  # a crash mid-write of a plain file
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _table(client, "t")
        report = LocalState(tmp_path, tables={"t"}).restore()
        assert report.path == tmp_path / PREVIOUS
        assert "truncated" in report.problems[0]
        assert _keys(client) == ["first"]

    previous = tmp_path / PREVIOUS
    previous.write_bytes(previous.read_bytes().replace(b"first", b"fir5t"))
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _table(client, "t")
        report = LocalState(tmp_path, tables={"t"}).restore()
        assert report.path is None and "checksum" in report.problems[0]
        assert report.summary() == "no saved state: starting empty"
        assert _keys(client) == []
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name)
