"""SQS sends (data access). Messages carry ids, never content."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from memlayer import aws
from memlayer.settings import get_settings

QueueName = Literal["analyze", "embed", "tasks"]


def queue_url(queue: QueueName) -> str:
    settings = get_settings()
    return {
        "analyze": settings.analyze_queue_url,
        "embed": settings.embed_queue_url,
        "tasks": settings.tasks_queue_url,
    }[queue]


async def send(queue: QueueName, message: dict[str, Any], *, delay_seconds: int = 0) -> None:
    await asyncio.to_thread(
        aws.client("sqs").send_message,
        QueueUrl=queue_url(queue),
        MessageBody=json.dumps(message, separators=(",", ":")),
        DelaySeconds=max(0, min(900, delay_seconds)),
    )


async def send_batch(queue: QueueName, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sends in batches of 10; returns the messages SQS did not accept."""
    failed: list[dict[str, Any]] = []

    def run() -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            resp = aws.client("sqs").send_message_batch(
                QueueUrl=queue_url(queue),
                Entries=[
                    {"Id": str(i), "MessageBody": json.dumps(m, separators=(",", ":"))}
                    for i, m in enumerate(chunk)
                ],
            )
            failed.extend(chunk[int(f["Id"])] for f in resp.get("Failed", []))

    await asyncio.to_thread(run)
    return failed
