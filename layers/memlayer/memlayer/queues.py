"""SQS sends (data access): the typed messages of `memlayer.messages`, as JSON."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from memlayer import aws
from memlayer.messages import QueueMessage
from memlayer.settings import get_settings

QueueName = Literal["analyze", "embed", "tasks"]


def queue_url(queue: QueueName) -> str:
    settings = get_settings()
    return {
        "analyze": settings.analyze_queue_url,
        "embed": settings.embed_queue_url,
        "tasks": settings.tasks_queue_url,
    }[queue]


async def send(queue: QueueName, message: QueueMessage, *, delay_seconds: int = 0) -> None:
    await asyncio.to_thread(
        aws.client("sqs").send_message,
        QueueUrl=queue_url(queue),
        MessageBody=message.model_dump_json(),
        DelaySeconds=max(0, min(900, delay_seconds)),
    )


async def send_batch(queue: QueueName, messages: Sequence[QueueMessage]) -> dict[int, str]:
    """Sends in batches of 10; returns the messages SQS did not accept: their positions, with
    SQS's reason."""
    failed: dict[int, str] = {}

    def run() -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            resp = aws.client("sqs").send_message_batch(
                QueueUrl=queue_url(queue),
                Entries=[
                    {"Id": str(i), "MessageBody": m.model_dump_json()} for i, m in enumerate(chunk)
                ],
            )
            failed.update((start + int(f["Id"]), f.get("Code", "")) for f in resp.get("Failed", []))

    await asyncio.to_thread(run)
    return failed
