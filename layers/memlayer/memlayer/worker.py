"""The shared shape of an SQS worker: Powertools' `AsyncBatchProcessor` +
`async_process_partial_response` run one record handler per message, concurrently, and own
each record's outcome: a handler that raises fails its message alone (reported by message id,
`ReportBatchItemFailures`, so only it is redelivered). Every worker reads its body the same way
(`delivery`: a body that does not parse is a `PoisonMessage`) and knows the same "last
delivery". Metrics are flushed per invocation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.batch.base import FailureResponse
from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from memlayer import invocation, secrets
from memlayer.messages import Delivery, PoisonMessage
from memlayer.observability import flush_metrics, logger, traced
from memlayer.runloop import run

__all__ = ["BatchCall", "RecordHandler", "delivery", "sqs_batch_worker", "sqs_worker"]

T = TypeVar("T")
Item = TypeVar("Item")
RecordHandler = Callable[[SQSRecord], Awaitable[None]]
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def delivery(record: SQSRecord, parse: Callable[[str], T]) -> Delivery[T]:
    """The record's body read by `parse`; a body `parse` refuses (ValueError: bad JSON, a
    pydantic validation error) is poison."""
    try:
        message = parse(record.body)
    except ValueError as exc:
        raise PoisonMessage(f"unreadable message: {exc}") from None
    return Delivery(message, int(record.attributes.approximate_receive_count or 1))


class _Processor(AsyncBatchProcessor):
    """AsyncBatchProcessor on the thread's long-lived event loop (memlayer.runloop). Outside
    Lambda, Powertools runs each batch in a fresh `asyncio.run` loop, which would strand the
    clients this container caches on its loop (the local cloud runs functions on threads)."""

    def async_process(self) -> list[tuple[Any, ...]]:
        async def every_record() -> list[tuple[Any, ...]]:
            with invocation.scope():  # the batch's records share their lookups
                return list(
                    await asyncio.gather(*(self._async_process_record(r) for r in self.records))
                )

        return run(every_record())

    def failure_handler(self, record: SQSRecord, exception: ExceptionInfo) -> FailureResponse:
        error = exception[1]
        logger.warning(
            "message failed", message_id=record.message_id, error=f"{type(error).__name__}: {error}"
        )
        return super().failure_handler(record, exception)


def sqs_batch_worker(per_batch: Callable[[int], RecordHandler]) -> Handler:
    """A Lambda handler whose record handler is made per invocation by `per_batch(number of
    records)`, for workers whose records share one call (see `BatchCall`)."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        # before the loop runs, so no record waits on Secrets Manager
        secrets.refresh(context.function_name)
        try:
            return async_process_partial_response(  # type: ignore[return-value]
                event=event,
                record_handler=per_batch(len(event.get("Records", []))),
                processor=_Processor(event_type=EventType.SQS),
                context=context,
            )
        finally:
            flush_metrics()

    return traced(handler)


def sqs_worker(record_handler: RecordHandler) -> Handler:
    """A Lambda handler that runs `record_handler` for every record of the batch."""
    return sqs_batch_worker(lambda _: record_handler)


class BatchCall(Generic[Item]):
    """One call over the items of a whole batch, made from record handlers that run
    concurrently: each handler `submit`s its record's item and gets back that item's own
    outcome (it raises that item's exception, or returns). The call runs once every one of the
    batch's `size` records has submitted, had none to submit, or failed before it could;
    `call` returns the failures by the items' positions in the list it was given."""

    def __init__(
        self, size: int, call: Callable[[list[Item]], Awaitable[dict[int, Exception]]]
    ) -> None:
        self._size = size
        self._call = call
        self._withdrawn = 0
        self._items: list[Item] = []
        self._outcomes: list[asyncio.Future[None]] = []
        self._running: asyncio.Task[None] | None = None  # referenced, so it is not collected

    async def submit(self, make_item: Callable[[], Awaitable[Item | None]]) -> None:
        """Adds what `make_item()` returns and waits for its outcome. A record that makes none
        (None, or it failed to: with that failure) drops out of the call."""
        try:
            item = await make_item()
        except BaseException:
            self._withdraw()
            raise
        if item is None:
            self._withdraw()
            return
        outcome = asyncio.get_running_loop().create_future()
        self._items.append(item)
        self._outcomes.append(outcome)
        self._maybe_run()
        await outcome

    def _withdraw(self) -> None:
        self._withdrawn += 1
        self._maybe_run()

    def _maybe_run(self) -> None:
        if self._items and len(self._items) + self._withdrawn == self._size:
            self._running = asyncio.ensure_future(self._run(self._items, self._outcomes))

    async def _run(self, items: Sequence[Item], outcomes: Sequence[asyncio.Future[None]]) -> None:
        try:
            failures = await self._call(list(items))
        except Exception as exc:  # the call itself failed: every item with it
            failures = dict.fromkeys(range(len(items)), exc)
        for position, outcome in enumerate(outcomes):
            failure = failures.get(position)
            if failure is None:
                outcome.set_result(None)
            else:
                outcome.set_exception(failure)
