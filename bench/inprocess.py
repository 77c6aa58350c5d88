"""In-process moto holding the template's table and the work queues, for benchmarks that run
the real services in one container without the local cloud."""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUEUE_ENV = {"analyze": "ANALYZE_QUEUE_URL", "embed": "EMBED_QUEUE_URL", "tasks": "TASKS_QUEUE_URL"}


@dataclass
class LambdaContext:
    """The parts of the Lambda runtime's `context` the handlers read (Powertools' Logger
    injects them into every log line)."""

    function_name: str
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def function_handler(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """functions/<name>/app.py's handler, called with a Lambda context as the runtime would."""
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", ROOT / "functions" / name / "app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    context = LambdaContext(f"memlayer-{name}")
    return lambda event: module.handler(event, context)


@contextmanager
def in_process_aws(**env: str) -> Iterator[tuple[Any, dict[str, str]]]:
    """Yields the parsed template stack and the queue URLs by role (analyze, embed, tasks)."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 (moto)
        AWS_DEFAULT_REGION="us-east-1",
        LOG_LEVEL="ERROR",
        EMBEDDINGS_PROVIDER="hash",
        DEFAULT_DAILY_WRITES="0",
        **env,
    )
    sys.path[:0] = [str(ROOT / "layers" / "memlayer"), str(ROOT)]
    import boto3
    from moto import mock_aws

    from infra.localcloud.motofixes import patch_moto_dynamodb_scale, serialize_moto_dynamodb
    from infra.localcloud.resources import table_request
    from infra.localcloud.stack import build_stack

    serialize_moto_dynamodb()  # workers touch it from several threads; DynamoDB is atomic
    patch_moto_dynamodb_scale()  # as the local cloud does
    stack = build_stack(ROOT / "template.yaml")
    with mock_aws():
        boto3.client("dynamodb").create_table(**table_request("memlayer", stack.tables["Table"]))
        sqs = boto3.client("sqs")
        urls = {role: sqs.create_queue(QueueName=role)["QueueUrl"] for role in QUEUE_ENV}
        os.environ.update({QUEUE_ENV[role]: url for role, url in urls.items()})
        yield stack, urls


async def write_ready_memories(user_id: str, records: list[Any]) -> list[Any]:
    """Writes `user_id`'s memory records straight into the table, `ready` with their
    embeddings (the configured embedder's), and sets the profile's counters and generation (as
    the first create would: without it the next real write sets one, and every warm index
    takes that for an erase and reloads): a fast seed for search benches, bypassing the API
    and the workers. Returns the records as stored."""
    import numpy as np

    from memlayer import aws
    from memlayer.ai.embeddings import get_embedder
    from memlayer.ids import new_id
    from memlayer.settings import get_settings
    from memlayer.storage import get_store
    from memlayer.storage.base import StoredVector

    store: Any = get_store()
    embedder = get_embedder(get_settings())
    records = [r.model_copy(update={"embedding_space": embedder.space}) for r in records]
    vectors = await embedder.embed([r.content for r in records])
    store._batch_write([{"PutRequest": {"Item": store._memory_item(r)}} for r in records])
    await store.put_vectors(
        user_id,
        [
            StoredVector(r.id, embedder.space, r.content_hash, np.asarray(v, "<f2").tobytes())
            for r, v in zip(records, vectors, strict=True)
        ],
    )
    aws.client("dynamodb").update_item(
        TableName=store.table,
        Key={"PK": {"S": f"USER#{user_id}"}, "SK": {"S": "PROFILE"}},
        UpdateExpression=(
            "SET memories = :n, #b = :z, data_version = :one, "
            "generation = if_not_exists(generation, :gen)"
        ),
        ExpressionAttributeNames={"#b": "bytes"},
        ExpressionAttributeValues={
            ":n": {"N": str(len(records))},
            ":z": {"N": "0"},
            ":one": {"N": "1"},
            ":gen": {"S": new_id()},
        },
    )
    return records
