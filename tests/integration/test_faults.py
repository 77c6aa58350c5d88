"""The system under AWS faults (tests/faults.py injects them below botocore, so the SDK's own
retries run): DynamoDB throttling and transaction conflicts, SQS send failures after the memory
is written, S3 errors and timeouts; on Postgres, a database that refuses writes. HTTP answers a
clean 503 with Retry-After (never a 500), no memory is lost, and the workers retry until they
finish."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import STORAGE_BACKEND, User, postgres_refusing
from tests.faults import Faults, injected

# The DynamoDB faults meet only the DynamoDB backend; Postgres meets its own below.
dynamodb_faults = pytest.mark.skipif(
    STORAGE_BACKEND != "dynamodb", reason="injects DynamoDB faults"
)
database_faults = pytest.mark.skipif(
    STORAGE_BACKEND != "supabase", reason="a Postgres trigger refuses writes"
)


@pytest.fixture
def faults(cloud: Any) -> Any:
    cloud.drain(timeout=60)  # earlier tests' work does not meet these faults
    with injected("dynamodb", "sqs", "s3") as active:
        yield active


def unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert set(body) == {"error", "detail", "request_id"}
    assert body["error"] == "service_unavailable"
    assert "Traceback" not in response.text


def dlq_total(cloud: Any) -> int:
    dlqs = [q for q in cloud.stack.queues if q.endswith("DLQ")]
    return sum(sum(c.values()) for c in cloud.queue_counts(dlqs).values())


@contextlib.contextmanager
def memory_writes_refused(faults: Faults, user_id: str) -> Iterator[None]:
    """The backend refuses to write the user's memories while inside: DynamoDB throttles every
    transaction (past botocore's 3 attempts); Postgres raises a serialization failure from a
    trigger on the user's rows."""
    if STORAGE_BACKEND == "dynamodb":
        faults.add("dynamodb", "TransactWriteItems", "throttle")
        yield
        assert all(rule.injected for rule in faults.rules)
        faults.clear()
        return
    with postgres_refusing(user_id, "insert") as fired:
        yield
        assert fired() >= 1


def test_refused_writes_answer_503_and_a_retry_loses_nothing(
    cloud: Any, user: User, faults: Faults
) -> None:
    key = {"Idempotency-Key": "refused-create"}
    body = {"content": "written while storage refuses"}
    with memory_writes_refused(faults, user.user_id):
        unavailable(user.http.post("/v1/memories", json=body, headers=key))
    created = user.http.post("/v1/memories", json=body, headers=key)
    assert created.status_code == 201, created.text
    cloud.drain(timeout=60)
    items = user.http.get("/v1/memories").json()["items"]
    assert [(i["content"], i["status"]) for i in items] == [(body["content"], "ready")]


@dynamodb_faults
def test_throttled_reads_answer_503(user: User, faults: Faults) -> None:
    memory_id = user.http.post("/v1/memories", json={"content": "read me"}).json()["id"]
    for operation in ("GetItem", "Query", "BatchGetItem"):
        faults.add("dynamodb", operation, "throttle")
    unavailable(user.http.get(f"/v1/memories/{memory_id}"))
    unavailable(user.http.get("/v1/memories"))
    unavailable(user.http.post("/v1/search", json={"query": "read"}))
    faults.clear()
    assert user.http.get(f"/v1/memories/{memory_id}").status_code == 200


@dynamodb_faults
def test_transaction_conflicts_are_retried(cloud: Any, user: User, faults: Faults) -> None:
    rule = faults.add("dynamodb", "TransactWriteItems", "conflict", times=3)
    created = user.http.post("/v1/memories", json={"content": "won after three lost races"})
    assert created.status_code == 201, created.text
    assert rule.injected == 3
    memory_id = created.json()["id"]
    cloud.drain(timeout=60)
    faults.add("dynamodb", "TransactWriteItems", "conflict", times=3)
    edited = user.http.patch(f"/v1/memories/{memory_id}", json={"tags": ["raced"]})
    assert edited.status_code == 200, edited.text
    faults.add("dynamodb", "TransactWriteItems", "conflict")  # never wins
    unavailable(user.http.patch(f"/v1/memories/{memory_id}", json={"tags": ["again"]}))
    unavailable(user.http.delete(f"/v1/memories/{memory_id}"))
    faults.clear()
    assert user.http.get(f"/v1/memories/{memory_id}").json()["tags"] == ["raced"]


@database_faults
def test_workers_retry_a_refusing_database_until_they_finish(cloud: Any, user: User) -> None:
    cloud.drain(timeout=60)  # earlier tests' work does not meet this fault
    dlq_before = dlq_total(cloud)
    with postgres_refusing(user.user_id, "update of embedding", times=2) as fired:
        ids = [
            user.http.post("/v1/memories", json={"content": f"database fault {n}"}).json()["id"]
            for n in range(3)
        ]
        cloud.drain(timeout=120)
        assert fired() > 2  # refused twice, then written
    statuses = [user.http.get(f"/v1/memories/{i}").json()["status"] for i in ids]
    assert statuses == ["ready"] * 3
    assert dlq_total(cloud) == dlq_before


def test_a_failed_enqueue_keeps_the_memory_and_the_sweep_finishes_it(
    cloud: Any, user: User, faults: Faults
) -> None:
    from memlayer.ids import utcnow
    from memlayer.services.cleanup import run_cleanup

    rule = faults.add("sqs", "SendMessage", "server_error")
    created = user.http.post("/v1/memories", json={"content": "the queue was down"})
    assert created.status_code == 201, created.text  # the memory is durable before the enqueue
    assert rule.injected >= 3  # botocore tried three times
    memory_id = created.json()["id"]
    assert user.http.get(f"/v1/memories/{memory_id}").json()["status"] == "pending"
    faults.clear()
    asyncio.run(run_cleanup(now=utcnow() + timedelta(minutes=20)))  # the hourly sweep, later
    cloud.drain(timeout=60)
    assert user.http.get(f"/v1/memories/{memory_id}").json()["status"] == "ready"


@dynamodb_faults
def test_workers_retry_throttling_and_timeouts_until_they_finish(
    cloud: Any, user: User, faults: Faults
) -> None:
    dlq_before = dlq_total(cloud)
    # two saves' worth (botocore's 3 attempts each) of throttled vector writes (the embed
    # stage's save: its transaction carries the VEC# item), timeouts while the analyze step
    # saves, and an SQS failure as analyze hands over to embed
    faults.add("dynamodb", "TransactWriteItems", "throttle", times=6, matching="VEC#")
    faults.add("dynamodb", "TransactWriteItems", "timeout", times=3)
    faults.add("sqs", "SendMessage", "server_error", times=3)
    ids = [
        user.http.post("/v1/memories", json={"content": f"worker fault {n}"}).json()["id"]
        for n in range(3)
    ]
    cloud.drain(timeout=120)
    statuses = [user.http.get(f"/v1/memories/{i}").json()["status"] for i in ids]
    assert statuses == ["ready"] * 3
    assert all(rule.injected == rule.times for rule in faults.rules)
    assert dlq_total(cloud) == dlq_before


def test_s3_errors_and_timeouts_answer_503_and_erase_finishes_on_retry(
    cloud: Any, user: User, faults: Faults
) -> None:
    from tests.integration.test_uploads import objects_under, upload

    done = upload(user, "note.txt", "text/plain", b"a file to erase")
    assert done["status"] == "completed"
    faults.add("s3", "ListObjectsV2", "timeout")
    unavailable(user.http.delete("/v1/me"))
    faults.clear()
    faults.add("s3", "DeleteObjects", "throttle")
    unavailable(user.http.delete("/v1/me"))
    faults.clear()
    erased = user.http.delete("/v1/me")
    assert erased.status_code == 200, erased.text
    assert objects_under(cloud, f"uploads/{user.user_id}/") == []
    assert user.http.get("/v1/memories").json()["items"] == []


def test_a_memory_whose_files_cannot_be_deleted_stays_until_a_retry_deletes_both(
    cloud: Any, user: User, faults: Faults
) -> None:
    from tests.integration.test_uploads import objects_under, upload

    done = upload(user, "kept.txt", "text/plain", b"a file and its memory")
    prefix = f"uploads/{user.user_id}/{done['upload_id']}/"
    faults.add("s3", "DeleteObjects", "throttle")
    unavailable(user.http.delete(f"/v1/memories/{done['memory_id']}"))
    faults.clear()
    assert user.http.get(f"/v1/memories/{done['memory_id']}").status_code == 200
    assert objects_under(cloud, prefix) == [f"{prefix}kept.txt"]
    assert user.http.delete(f"/v1/memories/{done['memory_id']}").status_code == 204
    assert user.http.get(f"/v1/memories/{done['memory_id']}").status_code == 404
    assert objects_under(cloud, prefix) == []


def test_an_export_retries_s3_timeouts_until_it_completes(
    cloud: Any, user: User, faults: Faults
) -> None:
    user.http.post("/v1/memories", json={"content": "to be exported"})
    cloud.drain(timeout=60)
    faults.add("s3", "PutObject", "timeout", times=3)
    faults.add("s3", "CreateMultipartUpload", "timeout", times=3)
    started = user.http.post("/v1/export")
    assert started.status_code == 202, started.text
    cloud.drain(timeout=120)
    job = user.http.get(started.json()["status_url"]).json()
    assert job["status"] == "completed", job
    assert job["download_url"]
