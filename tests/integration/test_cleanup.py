"""The cleanup sweep removes exactly what has expired (jobs, connections, idempotency records,
rate windows, day counters, revoked keys, orphan uploads with their objects), turns lost
pending captures into memories instead of dropping them, leaves everything else alone, and is
harmless when two sweeps run at once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from memlayer.ids import new_id
from tests.conftest import CLOUD_ENV, on_dynamodb_only, reset_caches

ROOT = Path(__file__).resolve().parents[2]
# A DynamoDB stack of its own, read item by item; the contract suite sweeps both backends.
pytestmark = on_dynamodb_only


@pytest.fixture(scope="module")
def private_cloud() -> Iterator[Any]:
    """A stack of its own (the sweep scans the whole table, and the shared cloud's table holds
    every other test's items): same template, another stack name, no pumps or schedules."""
    from infra.localcloud import LocalCloud

    with LocalCloud(
        ROOT / "template.yaml",
        port=0,
        env_overrides=CLOUD_ENV,
        serve_http=False,
        pumps=False,
        schedules=False,
        stack_name="memlayer-cleanup-test",
    ) as local:
        reset_caches()
        yield local
    reset_caches()


def keys(stack: Any) -> set[tuple[str, str]]:
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": stack.table}
    while True:
        resp = stack.ddb.scan(**request)
        items += resp["Items"]
        if "LastEvaluatedKey" not in resp:
            break
        request["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
    return {(i["PK"]["S"], i["SK"]["S"]) for i in items}


def objects(stack: Any) -> set[str]:
    resp = stack.s3.list_objects_v2(Bucket=stack.bucket)
    return {o["Key"] for o in resp.get("Contents", [])}


@pytest.fixture
def clean(private_cloud: Any) -> Any:
    """An empty table, bucket and queues for each test."""
    stack = SimpleNamespace(
        cloud=private_cloud,
        ddb=private_cloud.boto3_client("dynamodb"),
        sqs=private_cloud.boto3_client("sqs"),
        s3=private_cloud.boto3_client("s3"),
        table=private_cloud.table_name("Table"),
        bucket=private_cloud.bucket_name("UploadsBucket"),
        queues={lid: private_cloud.queue_url(lid) for lid in private_cloud.stack.queues},
    )
    for pk, sk in keys(stack):
        stack.ddb.delete_item(TableName=stack.table, Key={"PK": {"S": pk}, "SK": {"S": sk}})
    for key in objects(stack):
        stack.s3.delete_object(Bucket=stack.bucket, Key=key)
    for url in stack.queues.values():
        while messages := stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            for m in messages:
                stack.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return stack


def put_raw(stack: Any, pk: str, sk: str, expires_at: int, kind: str | None = None) -> None:
    item = {"PK": {"S": pk}, "SK": {"S": sk}, "expires_at": {"N": str(expires_at)}}
    if kind:
        item["type"] = {"S": kind}
    stack.ddb.put_item(TableName=stack.table, Item=item)


async def seed(stack: Any, user: str) -> SimpleNamespace:
    """One item of every kind that expires, next to live ones; returns what must go."""
    from memlayer.blobs import object_key
    from memlayer.ids import new_id, utcnow
    from memlayer.models import JobRecord
    from memlayer.services import api_keys, memories
    from memlayer.storage import get_store
    from memlayer.storage.pipeline import PendingCapture, capture_sk
    from memlayer.storage.uploads import UploadRecord, upload_sk

    store: Any = get_store()
    now = utcnow()
    stamp = int(now.timestamp())
    pk = f"USER#{user}"
    gone: set[tuple[str, str]] = set()

    kept_memory = await memories.create(user, memories.Draft(content="keep me"))

    old_job = JobRecord(
        user_id=user, id=new_id(), created_at=now - timedelta(days=8), updated_at=now
    )
    await store.put_job(old_job)
    gone.add((pk, f"JOB#{old_job.id}"))

    await store.put_connection(user, "conn-old", stamp - 10)
    await store.put_connection(user, "conn-live", stamp + 3600)
    gone.add((pk, "CONN#conn-old"))

    put_raw(stack, pk, "IDEM#memories#old", stamp - 1, "idempotency")
    put_raw(stack, pk, "IDEM#memories#live", stamp + 3600, "idempotency")
    gone.add((pk, "IDEM#memories#old"))

    await store.take_rate("ip#203.0.113.9", limit=100, period=60, owner=None, now=stamp - 600)
    await store.take_rate(f"user#{user}", limit=100, period=60, owner=user, now=stamp)
    gone.add(("RATE#ip#203.0.113.9", "RATE#ip#203.0.113.9"))

    put_raw(stack, pk, "DAY#2020-01-01", stamp - 86400)
    gone.add((pk, "DAY#2020-01-01"))

    old_change = f"CHG#{new_id()}"
    put_raw(stack, pk, old_change, stamp - 60, "change")
    gone.add((pk, old_change))

    revoked, _ = await api_keys.create_api_key(user, "old", ["read"])
    await api_keys.create_api_key(user, "live", ["read"])
    await api_keys.revoke_api_key(user, revoked.id)
    stack.ddb.update_item(
        TableName=stack.table,
        Key={"PK": {"S": pk}, "SK": {"S": f"KEY#{revoked.id}"}},
        UpdateExpression="SET expires_at = :e",
        ExpressionAttributeValues={":e": {"N": str(stamp - 5)}},
    )
    gone.add((pk, f"KEY#{revoked.id}"))

    def capture(conversation: str, expires_at: int) -> PendingCapture:
        return PendingCapture(
            user_id=user,
            provider="chatgpt",
            conversation_id=conversation,
            capture_id=new_id(),
            text=f"prompt of {conversation}",
            url=None,
            message_id=None,
            captured_at=now.isoformat(),
            expires_at=expires_at,
        )

    await store.put_capture(capture("lost#1", stamp - 3600))  # its flush task was lost
    await store.put_capture(capture("late", stamp - 30))  # its task may still come
    await store.put_capture(capture("live", stamp + 300))
    gone.add((pk, capture_sk("chatgpt", "lost#1")))

    def upload(age: timedelta, status: str, purge: timedelta | None) -> UploadRecord:
        upload_id = new_id()
        created = now - age
        record = UploadRecord(
            user_id=user,
            id=upload_id,
            filename="notes.txt",
            content_type="text/plain",
            size=5,
            key=object_key(user, upload_id, "notes.txt"),
            status=status,  # type: ignore[arg-type]
            created_at=created,
            updated_at=created,
            url_expires_at=created + timedelta(minutes=15),
            purge_after=created + purge if purge else None,
        )
        stack.s3.put_object(Bucket=stack.bucket, Key=record.key, Body=b"hello")
        return record

    expired_ticket = upload(timedelta(hours=25), "awaiting", timedelta(hours=24, minutes=15))
    orphan = upload(timedelta(hours=24, minutes=30), "awaiting", timedelta(hours=24, minutes=45))
    recent = upload(timedelta(hours=1), "awaiting", timedelta(hours=24, minutes=15))
    completed = upload(timedelta(hours=48), "completed", None)
    for record in (expired_ticket, orphan, recent, completed):
        await store.put_upload(record)
    gone |= {(pk, upload_sk(expired_ticket.id)), (pk, upload_sk(orphan.id))}

    return SimpleNamespace(
        gone=gone,
        gone_objects={expired_ticket.key, orphan.key},
        kept_objects={recent.key, completed.key},
        kept_memory=kept_memory.memory.id,
        lost_prompt="prompt of lost#1",
    )


EXPECTED = {
    "jobs": 1,
    "connections": 1,
    "idempotency": 1,
    "rate": 1,
    "counters": 1,
    "api_keys": 1,
    "changes": 1,
    "uploads": 2,
    "files": 2,
}


def prompt_memories(user: str) -> list[Any]:
    from memlayer.storage import get_store

    records = asyncio.run(get_store().all_memories(user))
    return [r for r in records if r.kind == "prompt"]


def test_cleanup_removes_exactly_what_expired(clean: Any) -> None:
    from memlayer.services.cleanup import run_cleanup

    user = f"user-{new_id()}"
    seeded = asyncio.run(seed(clean, user))
    before = keys(clean)
    assert seeded.gone <= before

    report = asyncio.run(run_cleanup())

    assert report["deleted"] == EXPECTED
    assert report["captures_flushed"] == 1
    assert report["captures_waiting"] == 1
    assert report["errors"] == 0
    after = keys(clean)
    assert not (seeded.gone & after)
    # Nothing else went; what is new is the flushed prompt (a memory, its job, its change).
    assert (before - seeded.gone) <= after
    new = after - before
    assert sorted(sk.split("#")[0] for _, sk in new) == ["CHG", "JOB", "MEM"]
    [prompt] = prompt_memories(user)
    assert prompt.content == seeded.lost_prompt
    assert prompt.source.conversation_id == "lost#1"
    assert (f"USER#{user}", f"MEM#{seeded.kept_memory}") in after
    assert objects(clean) == seeded.kept_objects

    # A second sweep finds nothing more to do.
    again = asyncio.run(run_cleanup())
    assert set(again["deleted"].values()) == {0}
    assert again["captures_flushed"] == 0
    assert keys(clean) == after


def test_two_concurrent_sweeps_are_harmless(clean: Any) -> None:
    from memlayer.services.cleanup import run_cleanup

    user = f"user-{new_id()}"
    seeded = asyncio.run(seed(clean, user))
    before = keys(clean)

    async def both() -> list[dict[str, Any]]:
        return list(await asyncio.gather(run_cleanup(), run_cleanup()))

    first, second = asyncio.run(both())

    total = {k: first["deleted"][k] + second["deleted"][k] for k in EXPECTED}
    assert total == EXPECTED
    assert first["captures_flushed"] + second["captures_flushed"] == 1
    assert first["errors"] == second["errors"] == 0
    assert len(prompt_memories(user)) == 1  # claimed by one sweep, never flushed twice
    after = keys(clean)
    assert not (seeded.gone & after)
    assert (before - seeded.gone) <= after
    assert objects(clean) == seeded.kept_objects


def test_scheduled_handler_reports_dead_letters(
    clean: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from memlayer.observability import get_metrics

    get_metrics().clear_metrics()  # direct run_cleanup calls above never flushed theirs
    event = json.loads((ROOT / "events" / "cleanup_schedule.json").read_text())
    clean.sqs.send_message(QueueUrl=clean.queues["TasksDLQ"], MessageBody='{"type": "export"}')
    put_raw(clean, "USER#someone", "CONN#gone", int(time.time()) - 60, "connection")

    report = clean.cloud.invoke("cleanup", event)

    assert report["deleted"]["connections"] == 1
    tasks_dlq = clean.queues["TasksDLQ"].rsplit("/", 1)[-1]
    assert report["dlqs"][tasks_dlq]["visible"] == 1
    assert report["dead_letters"] == 1
    assert keys(clean) == set()
    [emf] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    namespace = CLOUD_ENV["POWERTOOLS_METRICS_NAMESPACE"]  # the configured one
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == namespace
    assert emf["CleanupDeleted_connections"] in (1, [1])
    assert emf["DeadLetters"] in (1, [1])


def test_stalled_enrichment_is_requeued_then_given_up(clean: Any) -> None:
    from memlayer.services import memories
    from memlayer.services.cleanup import run_cleanup
    from memlayer.storage import get_store

    user = f"user-{new_id()}"
    store: Any = get_store()

    async def stalled(content: str, age: timedelta) -> str:
        created = await memories.create(user, memories.Draft(content=content))
        record = await store.get_memory(user, created.memory.id)
        old = record.model_copy(update={"updated_at": record.updated_at - age})
        await store.save_memory(old, expected_version=record.version)
        return record.id

    async def scenario() -> tuple[str, str, str]:
        fresh = (await memories.create(user, memories.Draft(content="just written"))).memory.id
        return (
            fresh,
            await stalled("stalled an hour", timedelta(hours=1)),
            await stalled("stalled two days", timedelta(days=2)),
        )

    fresh, hour_old, days_old = asyncio.run(scenario())
    analyze = clean.queues["AnalyzeQueue"]
    for _ in range(3):  # drop the enqueues made by the creates themselves
        while msgs := clean.sqs.receive_message(QueueUrl=analyze, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            for m in msgs:
                clean.sqs.delete_message(QueueUrl=analyze, ReceiptHandle=m["ReceiptHandle"])

    report = asyncio.run(run_cleanup())

    assert report["memories_requeued"] == 1
    assert report["memories_failed"] == 1
    sent = clean.sqs.receive_message(QueueUrl=analyze, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["memory_id"] for m in sent] == [hour_old]
    given_up = asyncio.run(store.get_memory(user, days_old))
    assert given_up.status == "failed" and "did not complete" in given_up.error
    assert asyncio.run(store.get_memory(user, fresh)).status == "pending"
