"""One record never fails another: an embed batch that carries the same memory twice (SQS is
at-least-once; an edit during enrichment enqueues again) next to other users' messages, a
batch where one user's vector write fails, and unreadable records among good ones."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import STORAGE_BACKEND, User, make_user, postgres_refusing


def create(user: User, content: str) -> dict[str, Any]:
    response = user.http.post("/v1/memories", json={"content": content})
    assert response.status_code == 201, response.text
    return response.json()


def back_to_analyzed(user_id: str, memory_id: str) -> None:
    """Puts a ready memory back where the analyze step leaves it (analyzed, not embedded), so
    the next embed delivery has real work to do (its vector is written again with `ready`)."""
    from memlayer.models import JobRecord
    from memlayer.storage import get_store

    async def rewind() -> None:
        store: Any = get_store()
        record = await store.get_memory(user_id, memory_id)
        await store.save_memory(
            record.model_copy(update={"status": "processing", "embedded_hash": None}),
            expected_version=record.version,
        )
        job = await store.get_job(user_id, record.job_id)
        assert isinstance(job, JobRecord)
        await store.put_job(job.model_copy(update={"status": "embedding", "progress": 0.6}))

    asyncio.run(rewind())


def embed_event(messages: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{position}",
                "receiptHandle": f"r-{position}",
                "body": json.dumps(message),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:EmbedQueue",
                "awsRegion": "us-east-1",
            }
            for position, message in enumerate(messages)
        ]
    }


@contextlib.contextmanager
def vector_writes_failing_for(user_id: str) -> Iterator[None]:
    """The backend refuses every vector write of one user while inside (the embed stage's
    save of the vector with `ready`): DynamoDB throttles the user's transactions (past the
    SDK's retries); Postgres raises from a trigger on the memory's row."""
    if STORAGE_BACKEND == "dynamodb":
        from tests.faults import injected

        with injected("dynamodb") as faults:
            faults.add("dynamodb", "TransactWriteItems", "throttle", matching=user_id)
            yield
    else:
        with postgres_refusing(user_id, "update of embedding"):
            yield


def dlq_count(cloud: Any) -> int:
    counts = cloud.queue_counts(["EmbedDLQ"])["EmbedDLQ"]
    return sum(counts.values())


@pytest.fixture
def three_users(cloud: Any) -> Any:
    users = [make_user(cloud) for _ in range(3)]
    yield users
    for made in users:
        made.http.close()


def test_duplicate_embed_messages_do_not_fail_other_users(cloud: Any, three_users: Any) -> None:
    first, second, third = three_users
    made = [
        (first, create(first, "Duplicate delivery of one memory in a batch")),
        (second, create(second, "Another user's memory in the same batch")),
        (third, create(third, "A third user's memory in the same batch")),
    ]
    cloud.drain(timeout=60)
    for owner, memory in made:
        back_to_analyzed(owner.user_id, memory["id"])
    messages = [
        {"memory_id": memory["id"], "user_id": owner.user_id, "job_id": memory["job_id"]}
        for owner, memory in made
    ]
    dlq_before = dlq_count(cloud)

    # the first user's memory twice (and once more at the end), others in between
    result = cloud.invoke(
        "embed", embed_event([messages[0], messages[0], *messages[1:], messages[0]])
    )

    assert result == {"batchItemFailures": []}
    for owner, memory in made:
        stored = owner.http.get(f"/v1/memories/{memory['id']}").json()
        assert stored["status"] == "ready", stored
        job = owner.http.get(f"/v1/jobs/{memory['job_id']}").json()
        assert job["status"] == "completed"
    found = first.http.post("/v1/search", json={"query": "duplicate delivery", "mode": "semantic"})
    assert [hit["memory"]["id"] for hit in found.json()["items"]][:1] == [made[0][1]["id"]]
    assert dlq_count(cloud) == dlq_before


def test_a_failing_write_fails_only_its_own_records(cloud: Any, three_users: Any) -> None:
    """One user's vector write keeps failing: only that user's messages are reported failed
    (SQS redelivers them); the others are ready at once."""
    first, second, third = three_users
    made = [
        (first, create(first, "This user's vector write is throttled")),
        (second, create(second, "Written next to a failing write")),
        (third, create(third, "Also written next to a failing write")),
    ]
    cloud.drain(timeout=60)
    for owner, memory in made:
        back_to_analyzed(owner.user_id, memory["id"])
    messages = [
        {"memory_id": memory["id"], "user_id": owner.user_id, "job_id": memory["job_id"]}
        for owner, memory in made
    ]
    with vector_writes_failing_for(first.user_id):
        result = cloud.invoke("embed", embed_event([messages[0], messages[0], *messages[1:]]))

    assert result == {"batchItemFailures": [{"itemIdentifier": "m-0"}, {"itemIdentifier": "m-1"}]}
    statuses = [
        owner.http.get(f"/v1/memories/{memory['id']}").json()["status"] for owner, memory in made
    ]
    assert statuses == ["processing", "ready", "ready"]
    # the redelivery, once the backend recovers, finishes the first user's memory
    assert cloud.invoke("embed", embed_event([messages[0]])) == {"batchItemFailures": []}
    assert first.http.get(f"/v1/memories/{made[0][1]['id']}").json()["status"] == "ready"


def test_an_unreadable_record_fails_alone_in_every_worker(cloud: Any, three_users: Any) -> None:
    """A body that does not parse is poison the same way in every worker: reported by its own
    message id (so only it is redelivered, on its way to the DLQ), never failing its batch."""
    first, second, _ = three_users
    made = [(first, create(first, "Embedded next to poison")), (second, create(second, "Also"))]
    cloud.drain(timeout=60)
    for owner, memory in made:
        back_to_analyzed(owner.user_id, memory["id"])
    good = [
        json.dumps(
            {"memory_id": memory["id"], "user_id": owner.user_id, "job_id": memory["job_id"]}
        )
        for owner, memory in made
    ]
    event = embed_event([{}, {}, {}])
    for record, body in zip(event["Records"], [good[0], "{not json", good[1]], strict=True):
        record["body"] = body

    assert cloud.invoke("embed", event) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    for owner, memory in made:
        assert owner.http.get(f"/v1/memories/{memory['id']}").json()["status"] == "ready"

    tasks = embed_event([{}, {}, {}])
    bodies = [
        json.dumps({"type": "reembed", "user_id": first.user_id}),  # nothing to re-embed
        json.dumps({"type": "no-such-task", "user_id": first.user_id}),
        "[]",
    ]
    for record, body in zip(tasks["Records"], bodies, strict=True):
        record["body"] = body
    assert cloud.invoke("tasks", tasks) == {
        "batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-2"}]
    }
