"""SQS data access for the admin and the cleanup: queue depths, peeking at dead letters,
redriving them to the queue they came from, and sweeping one user's dead letters (erase).

A dead-letter queue's source is found the way SQS records it: the source queue's
`RedrivePolicy.deadLetterTargetArn` names the DLQ's ARN. (`start_message_move_task` is not
used: moto does not implement it, and receive → send → delete works everywhere.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memlayer import aws
from memlayer.observability import logger
from memlayer.settings import get_settings

MAX_BODY_CHARS = 4_096
DEPTH_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


def queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def work_queues() -> dict[str, str]:
    """The work queues this deployment names, by role."""
    settings = get_settings()
    urls = {
        "analyze": settings.analyze_queue_url,
        "embed": settings.embed_queue_url,
        "tasks": settings.tasks_queue_url,
    }
    return {name: url for name, url in urls.items() if url}


def dead_letter_queues() -> dict[str, str]:
    """The dead-letter queues (`DLQ_URLS`), by queue name."""
    return {queue_name(url): url for url in get_settings().dlq_urls if url}


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    visible: int
    in_flight: int
    delayed: int
    error: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str
    body: str
    truncated: bool
    receive_count: int
    sent_at: int | None
    first_received_at: int | None
    message_attributes: dict[str, str]


@dataclass(frozen=True)
class RedriveResult:
    queue: str
    source: str | None
    moved: int
    failed: int


def _sqs() -> Any:
    return aws.client("sqs")


def _depth(url: str) -> QueueDepth:
    try:
        attrs = _sqs().get_queue_attributes(QueueUrl=url, AttributeNames=DEPTH_ATTRIBUTES)[
            "Attributes"
        ]
    except Exception as exc:
        return QueueDepth(queue_name(url), 0, 0, 0, error=aws.error_code(exc) or type(exc).__name__)
    return QueueDepth(
        queue=queue_name(url),
        visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
    )


async def depths(urls: dict[str, str]) -> dict[str, QueueDepth]:
    """Depths of the given queues (by label); a queue that cannot be read reports its error."""
    labels = list(urls)
    found = await asyncio.gather(*(asyncio.to_thread(_depth, urls[label]) for label in labels))
    return dict(zip(labels, found, strict=True))


def _release(url: str, handles: list[str]) -> None:
    """Makes received messages visible again at once."""
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for i, handle in enumerate(handles[start : start + 10])
        ]
        try:
            _sqs().change_message_visibility_batch(QueueUrl=url, Entries=entries)
        except Exception as exc:  # they become visible anyway when the short timeout ends
            logger.warning("could not release messages", queue=queue_name(url), error=str(exc))


def _delete(url: str, handles: list[str]) -> int:
    deleted = 0
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": handle}
            for i, handle in enumerate(handles[start : start + 10])
        ]
        resp = _sqs().delete_message_batch(QueueUrl=url, Entries=entries)
        deleted += len(resp.get("Successful", []))
    return deleted


def _receive(url: str, count: int, visibility: int) -> list[dict[str, Any]]:
    resp = _sqs().receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=max(1, min(10, count)),
        VisibilityTimeout=visibility,
        WaitTimeSeconds=0,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    messages: list[dict[str, Any]] = resp.get("Messages", [])
    return messages


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _dead_letter(url: str, message: dict[str, Any]) -> DeadLetter:
    attrs = message.get("Attributes", {})
    body = message.get("Body", "")
    return DeadLetter(
        queue=queue_name(url),
        message_id=message["MessageId"],
        body=body[:MAX_BODY_CHARS],
        truncated=len(body) > MAX_BODY_CHARS,
        receive_count=_int(attrs.get("ApproximateReceiveCount")) or 0,
        sent_at=_int(attrs.get("SentTimestamp")),
        first_received_at=_int(attrs.get("ApproximateFirstReceiveTimestamp")),
        message_attributes={
            name: str(value.get("StringValue", ""))
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
    )


def _peek(url: str, limit: int, visibility: int) -> list[DeadLetter]:
    seen: dict[str, DeadLetter] = {}
    handles: list[str] = []
    try:
        while len(seen) < limit:
            messages = _receive(url, limit - len(seen), visibility)
            if not messages:
                break
            fresh = False
            for message in messages:
                handles.append(message["ReceiptHandle"])
                if message["MessageId"] not in seen:
                    seen[message["MessageId"]] = _dead_letter(url, message)
                    fresh = True
            if not fresh:
                break
    finally:
        _release(url, handles)
    return list(seen.values())[:limit]


async def peek(url: str, *, limit: int = 10, visibility_seconds: int = 20) -> list[DeadLetter]:
    """Up to `limit` messages of a DLQ, left in it: they are received with a short visibility
    timeout (so the loop does not see one twice) and made visible again at the end."""
    return await asyncio.to_thread(_peek, url, limit, visibility_seconds)


def _source_of(dlq_url: str) -> str | None:
    sqs = _sqs()
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    candidates = list(work_queues().values())
    try:
        candidates += sqs.list_dead_letter_source_queues(QueueUrl=dlq_url).get("queueUrls", [])
    except Exception as exc:  # not permitted or not supported: the configured queues remain
        logger.debug("list_dead_letter_source_queues failed", error=str(exc))
    for url in dict.fromkeys(candidates):
        try:
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
        except Exception as exc:
            logger.warning("could not read a queue", queue=queue_name(url), error=str(exc))
            continue
        policy = attrs.get("Attributes", {}).get("RedrivePolicy")
        if policy and json.loads(policy).get("deadLetterTargetArn") == dlq_arn:
            return url
    return None


async def source_queue(dlq_url: str) -> str | None:
    """The queue whose RedrivePolicy dead-letters into `dlq_url` (None for a DLQ that is not
    any queue's, such as the Scheduler's)."""
    return await asyncio.to_thread(_source_of, dlq_url)


def _redrive(dlq_url: str, source: str, limit: int) -> tuple[int, int]:
    sqs = _sqs()
    moved = failed = 0
    while moved + failed < limit:
        messages = _receive(dlq_url, limit - moved - failed, 60)
        if not messages:
            break
        entries = []
        for i, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = {
                    name: {k: v for k, v in value.items() if k in ("DataType", "StringValue")}
                    for name, value in message["MessageAttributes"].items()
                }
            entries.append(entry)
        resp = sqs.send_message_batch(QueueUrl=source, Entries=entries)
        sent = {int(entry["Id"]) for entry in resp.get("Successful", [])}
        moved += _delete(dlq_url, [messages[i]["ReceiptHandle"] for i in sorted(sent)])
        unsent = [m["ReceiptHandle"] for i, m in enumerate(messages) if i not in sent]
        if unsent:
            failed += len(unsent)
            _release(dlq_url, unsent)
    return moved, failed


async def redrive(dlq_url: str, *, limit: int = 100) -> RedriveResult:
    """Moves up to `limit` messages from a DLQ back to its source queue (send, then delete;
    a crash in between can deliver one twice, which the idempotent workers absorb)."""
    source = await source_queue(dlq_url)
    if source is None:
        return RedriveResult(queue_name(dlq_url), None, 0, 0)
    moved, failed = await asyncio.to_thread(_redrive, dlq_url, source, limit)
    return RedriveResult(queue_name(dlq_url), queue_name(source), moved, failed)


def _sweep(url: str, match: Callable[[str], bool], max_messages: int) -> int:
    matched: list[str] = []
    others: list[str] = []
    seen: set[str] = set()
    try:
        while len(seen) < max_messages:
            messages = _receive(url, 10, 60)
            if not messages:
                break
            fresh = False
            for message in messages:
                if message["MessageId"] in seen:
                    others.append(message["ReceiptHandle"])
                    continue
                seen.add(message["MessageId"])
                fresh = True
                (matched if match(message.get("Body", "")) else others).append(
                    message["ReceiptHandle"]
                )
            if not fresh:
                break
        return _delete(url, matched) if matched else 0
    finally:
        _release(url, others)


async def sweep(urls: list[str], match: Callable[[str], bool], *, max_messages: int = 1_000) -> int:
    """Deletes the messages of the given (dead-letter) queues whose body `match`es and leaves
    the others as they were; returns how many went. Only for DLQs: receiving counts toward a
    message's maxReceiveCount, which on a work queue would push others' messages to the DLQ."""
    found = await asyncio.gather(
        *(asyncio.to_thread(_sweep, url, match, max_messages) for url in urls)
    )
    return sum(found)
