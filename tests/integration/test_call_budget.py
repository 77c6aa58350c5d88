"""What the pipeline asks of DynamoDB per memory (each call costs on AWS and a few ms of CPU in
the local cloud): each stage (create, analysis saved, ready) is one write that carries its job's
progress, each worker reads a memory and its job once, the records of a batch share one
look-up of the user's live connections and one of their tag vocabulary, a vocabulary that
already has a memory's tags is not written again, and progress still reaches a live connection.

Calls are counted with a botocore `before-parameter-build` hook on the DynamoDB client the
functions share in the local cloud, each attributed to the function whose role it runs with."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.conftest import User, on_dynamodb_only

pytestmark = on_dynamodb_only


@dataclass
class Calls:
    """DynamoDB calls by the functions: (function, operation, params)."""

    seen: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        from infra.localcloud.iam import current_role

        role = current_role.get()
        if role is not None:
            with self._lock:
                self.seen.append((role.function, model.name, params))

    def of(self, function: str, operation: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for f, op, p in self.seen if f == function and op == operation]

    def keys_read(self, function: str) -> Counter[str]:
        """Sort keys the function read by key (GetItem and BatchGetItem)."""
        keys: Counter[str] = Counter()
        for params in self.of(function, "GetItem"):
            keys[params["Key"]["SK"]["S"]] += 1
        for params in self.of(function, "BatchGetItem"):
            for request in params["RequestItems"].values():
                keys.update(key["SK"]["S"] for key in request["Keys"])
        return keys


@pytest.fixture
def calls(cloud: Any) -> Iterator[Calls]:
    from memlayer import aws

    cloud.drain(timeout=60)  # earlier tests' work is not counted
    counted = Calls()
    events = aws.client("dynamodb").meta.events
    events.register("before-parameter-build.dynamodb", counted.record)
    try:
        yield counted
    finally:
        events.unregister("before-parameter-build.dynamodb", counted.record)


def invocations(cloud: Any, function: str) -> int:
    return sum(p.batches for p in cloud.pumps if p.source.function == function)


def create(user: User, content: str) -> dict[str, Any]:
    response = user.http.post("/v1/memories", json={"content": content})
    assert response.status_code == 201, response.text
    return response.json()


def written_keys(params: dict[str, Any]) -> set[str]:
    """The sort keys a TransactWriteItems puts or updates."""
    keys = set()
    for item in params["TransactItems"]:
        for action in item.values():
            keys.add((action.get("Item") or action.get("Key"))["SK"]["S"])
    return keys


def test_each_stage_is_one_write_that_carries_its_job_progress(
    cloud: Any, user: User, calls: Calls
) -> None:
    made = [create(user, f"One write per stage, note {n} on rye bread") for n in range(6)]
    cloud.drain(timeout=60)
    for memory in made:
        assert user.http.get(f"/v1/memories/{memory['id']}").json()["status"] == "ready"
        job = user.http.get(f"/v1/jobs/{memory['job_id']}").json()
        assert (job["status"], job["progress"]) == ("completed", 1.0)

    for function in ("MemoriesFunction", "AnalyzeFunction", "EmbedFunction"):
        transactions = [written_keys(p) for p in calls.of(function, "TransactWriteItems")]
        for memory in made:
            mine = [keys for keys in transactions if f"MEM#{memory['id']}" in keys]
            assert len(mine) == 1, (function, memory["id"], mine)
            assert f"JOB#{memory['job_id']}" in mine[0], function  # the progress rides on it
        assert len(transactions) == len(made), function
        # no job save of its own (a local analysis's start is saved with its result)
        assert calls.of(function, "PutItem") == [], function
        for operation in ("UpdateItem", "DeleteItem"):  # rate counters, the tag vocabulary
            touched = {p["Key"]["SK"]["S"][:4] for p in calls.of(function, operation)}
            assert not touched & {"MEM#", "JOB#"}, (function, operation, touched)
    # each vector rides on its memory's `ready` save: no vector write of its own
    embedded = [written_keys(p) for p in calls.of("EmbedFunction", "TransactWriteItems")]
    for memory in made:
        assert any(f"VEC#{memory['id']}" in keys for keys in embedded), memory["id"]
    assert calls.of("EmbedFunction", "BatchWriteItem") == []


def test_each_worker_reads_a_memory_once_and_a_batch_looks_up_connections_once(
    cloud: Any, user: User, calls: Calls
) -> None:
    before = {f: invocations(cloud, f) for f in ("AnalyzeFunction", "EmbedFunction")}
    made = [create(user, f"Budget note {n} about sourdough starters") for n in range(6)]
    cloud.drain(timeout=60)
    statuses = [user.http.get(f"/v1/memories/{m['id']}").json()["status"] for m in made]
    assert statuses == ["ready"] * 6

    for function in ("AnalyzeFunction", "EmbedFunction"):
        read = calls.keys_read(function)
        for memory in made:
            # once: the step's own read (saving the result does not read it again)
            assert read[f"MEM#{memory['id']}"] == 1, (function, read)
            assert read[f"JOB#{memory['job_id']}"] == 1, (function, read)
        ran = invocations(cloud, function) - before[function]
        # one look-up of the user's connections per invocation, not one per progress push
        # (analyze pushes twice per memory, embed once)
        connection_queries = [
            q
            for q in calls.of(function, "Query")
            if q["ExpressionAttributeValues"].get(":prefix") == {"S": "CONN#"}
        ]
        assert len(connection_queries) == ran, function
        assert ran <= len(made)
    vocabulary_reads = [
        g
        for g in calls.of("AnalyzeFunction", "GetItem")
        if g.get("ProjectionExpression") == "tag_vocabulary"
    ]
    assert (
        len(vocabulary_reads) == invocations(cloud, "AnalyzeFunction") - before["AnalyzeFunction"]
    )


def test_tags_the_vocabulary_already_has_are_not_written_again(
    cloud: Any, user: User, calls: Calls
) -> None:
    first = create(user, "Kubernetes pods restart when the liveness probe fails")
    cloud.drain(timeout=60)
    tags = user.http.get(f"/v1/memories/{first['id']}").json()["analysis"]["tags"]
    assert tags
    assert len(calls.of("AnalyzeFunction", "UpdateItem")) == 1  # the vocabulary grew
    again = create(user, "Kubernetes pods restart when the liveness probe fails")
    cloud.drain(timeout=60)
    assert user.http.get(f"/v1/memories/{again['id']}").json()["analysis"]["tags"] == tags
    assert len(calls.of("AnalyzeFunction", "UpdateItem")) == 1  # nothing new to add


def test_progress_of_every_record_in_a_batch_reaches_a_live_connection(
    cloud: Any, user: User, calls: Calls
) -> None:
    before = invocations(cloud, "AnalyzeFunction") + invocations(cloud, "EmbedFunction")
    with connect(f"{cloud.ws_url}?token={user.token}", open_timeout=5) as socket:
        made = [create(user, f"Live progress note {n}") for n in range(4)]
        stages: dict[str, list[str]] = {m["job_id"]: [] for m in made}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(s[-1:] != ["completed"] for s in stages.values()):
            message = json.loads(socket.recv(timeout=deadline - time.monotonic()))
            assert message["type"] == "job.progress"
            stages[message["job_id"]].append(message["status"])
    assert all(s == ["analyzing", "embedding", "completed"] for s in stages.values()), stages
    cloud.drain(timeout=30)
    # still one look-up per invocation with a connection open (not one per push)
    queries = len(calls.of("AnalyzeFunction", "Query")) + len(calls.of("EmbedFunction", "Query"))
    ran = invocations(cloud, "AnalyzeFunction") + invocations(cloud, "EmbedFunction") - before
    assert queries == ran


def test_reads_made_together_fall_back_to_their_own_when_the_batch_read_fails(
    cloud: Any, user: User
) -> None:
    import asyncio

    from memlayer.ids import new_id
    from memlayer.storage import get_store
    from tests.faults import injected

    made = [create(user, f"Read together {n}") for n in range(2)]
    # the faults below hit every DynamoDB call of the process: let the pipeline finish first,
    # or its workers' reads are throttled too and their messages end in a DLQ
    cloud.drain(timeout=60)
    store = get_store()

    async def read_all() -> list[Any]:
        return await asyncio.gather(
            store.get_memory(user.user_id, made[0]["id"]),
            store.get_job(user.user_id, made[1]["job_id"]),
            store.get_memory(user.user_id, new_id()),  # not there
        )

    with injected("dynamodb") as faults:
        batch = faults.add("dynamodb", "BatchGetItem", "throttle")
        memory, job, missing = asyncio.run(read_all())
        assert batch.injected >= 1  # they were asked for together, and that failed
        assert memory is not None and memory.id == made[0]["id"]
        assert job is not None and job.id == made[1]["job_id"]
        assert missing is None
        # each read on its own: a failing one fails only its caller
        faults.add("dynamodb", "GetItem", "throttle", matching=made[0]["id"])

        async def read_both() -> list[Any]:
            return await asyncio.gather(
                store.get_memory(user.user_id, made[0]["id"]),
                store.get_memory(user.user_id, made[1]["id"]),
                return_exceptions=True,
            )

        outcomes = asyncio.run(read_both())
    assert isinstance(outcomes[0], Exception)
    assert getattr(outcomes[1], "id", None) == made[1]["id"]
