"""SQS event source mappings: poll a queue, invoke the function with an SQS event.

Mirrors Lambda's poller: batches up to BatchSize, waits up to
MaximumBatchingWindowInSeconds to fill a batch, runs up to the mapping's
ScalingConfig.MaximumConcurrency batches at once (Lambda's poller starts with five
concurrent batches when there is no maximum: so does this one), deletes what succeeded and
leaves what failed for redelivery. With ReportBatchItemFailures only the reported messages are left;
when the handler raises (or reports an unknown id) the whole batch is left. Left messages
are made visible again after `retry_visibility_seconds` (instead of the queue's full
VisibilityTimeout) so the queue's RedrivePolicy moves poison messages to the DLQ quickly.

The poller's calls go to moto's SQS backend in this process (`PollerQueue`), with the
function's role checked as IAM checks Lambda's poller: the same messages, receipt handles,
redrive and visibility, without the SDK serializing each request and parsing each answer
and moto's handler doing the reverse (a ReceiveMessage of 10 cost 2.4 ms of CPU through
boto3, 0.7 ms of it in moto's backend).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .iam import Role, require
from .stack import SqsSource

log = logging.getLogger("localcloud")

RECEIVE_WAIT_SECONDS = 1
# While a batch fills, the queue is looked at this often (a long poll would return for each
# message as it arrives: one ReceiveMessage per message while they trickle in).
FILL_POLL_SECONDS = 0.25
# Concurrent batches of a mapping without ScalingConfig.MaximumConcurrency.
DEFAULT_CONCURRENCY = 5


def is_s3_test_event(body: str) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("Event") == "s3:TestEvent"


def sqs_record(message: Any, source_arn: str, region: str) -> dict[str, Any]:
    """A received moto `Message` -> a Lambda SQS event record."""
    attributes = {
        "ApproximateReceiveCount": str(message.approximate_receive_count),
        "SentTimestamp": str(message.sent_timestamp),
        "SenderId": message.sender_id,
        "ApproximateFirstReceiveTimestamp": str(message.approximate_first_receive_timestamp),
    }
    optional = {
        "SequenceNumber": message.sequence_number,
        "MessageGroupId": message.group_id,
        "MessageDeduplicationId": message.deduplication_id,
        "AWSTraceHeader": (message.system_attributes or {})
        .get("AWSTraceHeader", {})
        .get("StringValue"),
    }
    attributes.update((key, value) for key, value in optional.items() if value is not None)
    message_attributes = {}
    for name, value in (message.message_attributes or {}).items():
        entry: dict[str, Any] = {
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType", "String"),
        }
        if "StringValue" in value:
            entry["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            entry["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        message_attributes[name] = entry
    record = {
        "messageId": message.id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.body_md5,
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": region,
    }
    if message_attributes:
        record["md5OfMessageAttributes"] = message.attribute_md5
    return record


class PollerQueue:
    """One queue as Lambda's poller calls it, on moto's backend in this process: receive,
    delete and change visibility, the first two with the function's role checked (as IAM
    checks the poller, which uses the function's execution role)."""

    def __init__(
        self, queue_url: str, queue_arn: str, *, account_id: str, region: str, role: Role | None
    ) -> None:
        from moto.sqs.models import sqs_backends

        self._backend = sqs_backends[account_id][region]
        self.region = region
        self.name = queue_url.rsplit("/", 1)[-1]
        self.arn = queue_arn
        self.role = role
        # The SQS requests these stand for, by operation (bench.calls counts them).
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()

    def _request(self, operation: str, action: str | None, entries: int = 1) -> None:
        """Counts the request(s) (a batch call takes ten entries) and checks the role allows
        `action` (None: not the function's call)."""
        with self._calls_lock:
            self.calls[operation] += max(1, -(-entries // 10))
        if self.role is not None and action is not None:
            require(self.role, "sqs", operation, action, self.arn)

    def receive(self, count: int, wait_seconds: int) -> list[Any]:
        """Up to `count` (1-10) messages, waiting up to `wait_seconds` for the first."""
        self._request("ReceiveMessage", "sqs:ReceiveMessage")
        queue = self._backend.get_queue(self.name)
        return list(
            self._backend.receive_message(
                self.name, max(1, min(10, count)), wait_seconds, queue.visibility_timeout, ["All"]
            )
        )

    def delete(self, messages: Sequence[Any]) -> None:
        self._request("DeleteMessageBatch", "sqs:DeleteMessage", len(messages))
        entries = [{"Id": m.id, "ReceiptHandle": m.receipt_handle} for m in messages]
        self._backend.delete_message_batch(self.name, entries)

    def show_again(self, messages: Sequence[Any], seconds: int) -> None:
        """Visible again in `seconds`: a local shortcut (Lambda waits out the queue's
        VisibilityTimeout), so not the function's call."""
        self._request("ChangeMessageVisibilityBatch", None, len(messages))
        entries = [
            {"Id": m.id, "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": seconds}
            for m in messages
        ]
        self._backend.change_message_visibility_batch(self.name, entries)


def failed_ids(result: Any, batch_ids: set[str]) -> set[str] | None:
    """Message ids to retry per a ReportBatchItemFailures response; None = whole batch."""
    if result is None:
        return set()
    if not isinstance(result, dict):
        return set()  # Lambda treats a non-dict response as success.
    failures = result.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    ids: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in batch_ids:
            return None  # an invalid report fails the whole batch
        ids.add(identifier)
    return ids


class SqsPump(threading.Thread):
    def __init__(
        self,
        source: SqsSource,
        *,
        queue: PollerQueue,
        invoke: Callable[[str, Any], Any],
        retry_visibility_seconds: int = 1,
    ) -> None:
        super().__init__(name=f"sqs-pump-{source.function}-{source.queue}", daemon=True)
        self.source = source
        self.queue = queue
        self._invoke = invoke
        self.retry_visibility_seconds = retry_visibility_seconds
        self._stop_event = threading.Event()
        self.concurrency = source.maximum_concurrency or DEFAULT_CONCURRENCY
        self._slots = threading.Semaphore(self.concurrency)
        self._filling = False
        self._running = 0  # batches being invoked
        self._count_lock = threading.Lock()
        self.batches = 0
        self.processed = 0
        self.failed = 0

    @property
    def busy(self) -> bool:
        """A batch is being filled or invoked."""
        return self._filling or self._running > 0

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix=self.name) as batches:
            while not self._stop_event.is_set():
                # a free slot first: messages are received only when a batch can start
                if not self._slots.acquire(timeout=0.5):
                    continue
                try:
                    batch = self._collect()
                    if batch is not None:
                        with self._count_lock:
                            self._running += 1
                except Exception:  # never let the pump die; moto may be stopping
                    batch = None
                    if not self._stop_event.is_set():
                        log.exception("SQS pump for %s failed; retrying", self.source.queue)
                        self._stop_event.wait(0.5)
                finally:
                    self._filling = False
                if batch is None:
                    self._slots.release()
                    continue
                batches.submit(self._run_batch, *batch)
        # (leaving the executor waited for the running batches, their deletes included)

    def _run_batch(self, messages: list[Any], records: list[dict[str, Any]]) -> None:
        try:
            self._process(messages, records)
        except Exception:
            if not self._stop_event.is_set():
                log.exception("SQS pump for %s failed a batch", self.source.queue)
        finally:
            with self._count_lock:
                self._running -= 1
            self._slots.release()

    def _collect(self) -> tuple[list[Any], list[dict[str, Any]]] | None:
        """A batch as Lambda's poller fills it: (messages, their event records), or None."""
        source = self.source
        messages = self.queue.receive(source.batch_size, RECEIVE_WAIT_SECONDS)
        if not messages or self._stop_event.is_set():
            return None
        self._filling = True
        deadline = time.monotonic() + source.batching_window_s
        while len(messages) < source.batch_size and not self._stop_event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = self.queue.receive(source.batch_size - len(messages), 0)
            messages.extend(more)
            if len(more) < 10:  # the queue has no more for now: let some arrive
                self._stop_event.wait(min(FILL_POLL_SECONDS, remaining))

        records, drop = [], []
        for message in messages:
            if is_s3_test_event(message.body):
                drop.append(message)
            else:
                records.append(sqs_record(message, source.queue_arn, self.queue.region))
        if drop:
            self.queue.delete(drop)
        return (messages, records) if records else None

    def _process(self, messages: list[Any], records: list[dict[str, Any]]) -> None:
        source = self.source
        by_id = {m.id: m for m in messages}
        batch_ids = {r["messageId"] for r in records}
        try:
            result = self._invoke(source.function, {"Records": records})
        except Exception as exc:
            log.warning(
                "%s failed a batch of %d from %s (%s); all will be retried",
                source.function,
                len(records),
                source.queue,
                exc,
            )
            retry: set[str] | None = batch_ids
        else:
            retry = failed_ids(result, batch_ids) if source.report_batch_item_failures else set()
            if retry is None:
                log.warning(
                    "%s returned an invalid batchItemFailures %r; the batch will be retried",
                    source.function,
                    result,
                )
                retry = batch_ids
        succeeded = [by_id[i] for i in batch_ids - retry]
        with self._count_lock:
            self.batches += 1
            self.processed += len(succeeded)
            self.failed += len(retry)
        if succeeded:
            self.queue.delete(succeeded)
        if retry:
            log.info(
                "%s: %d of %d messages left on %s for retry",
                source.function,
                len(retry),
                len(records),
                source.queue,
            )
            self.queue.show_again([by_id[i] for i in retry], self.retry_visibility_seconds)
