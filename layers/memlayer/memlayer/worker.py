"""The shared shape of an SQS worker: one event loop per container, Powertools'
`BatchProcessor` + `process_partial_response` so only failed messages are retried
(`ReportBatchItemFailures`), and metrics flushed per invocation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from memlayer import secrets
from memlayer.observability import flush_metrics, logger, traced
from memlayer.runloop import run

__all__ = ["each", "receive_count", "run", "sqs_batch_handler"]


BatchFn = Callable[[list[SQSRecord]], Coroutine[Any, Any, dict[str, Exception]]]


def sqs_batch_handler(process: BatchFn) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """Builds a Lambda handler: `process` gets the whole batch (so it can batch provider calls)
    and returns the failures by message id; those, and only those, are reported back."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        records = [SQSRecord(raw) for raw in event.get("Records", [])]
        secrets.refresh()  # before the loop runs, so no record waits on Secrets Manager
        failures = run(process(records))

        def record_handler(record: SQSRecord) -> None:
            failure = failures.get(record.message_id)
            if failure is not None:
                raise failure

        try:
            return process_partial_response(  # type: ignore[return-value]
                event=event,
                record_handler=record_handler,
                processor=BatchProcessor(event_type=EventType.SQS),
                context=context,
            )
        finally:
            flush_metrics()

    return traced(handler)


async def each(
    records: list[SQSRecord], step: Callable[[SQSRecord], Awaitable[None]]
) -> dict[str, Exception]:
    """Runs `step` for every record concurrently; an exception fails that record alone."""
    outcomes = await asyncio.gather(*(step(record) for record in records), return_exceptions=True)
    failures: dict[str, Exception] = {}
    for record, outcome in zip(records, outcomes, strict=True):
        if isinstance(outcome, Exception):
            logger.warning(
                "message failed",
                message_id=record.message_id,
                error=f"{type(outcome).__name__}: {outcome}",
            )
            failures[record.message_id] = outcome
        elif isinstance(outcome, BaseException):
            raise outcome
    return failures


def receive_count(record: SQSRecord) -> int:
    return int(record.attributes.approximate_receive_count or 1)
