"""SQS event source mappings: poll a queue, invoke the function with an SQS event.

Mirrors Lambda's poller: batches up to BatchSize, waits up to
MaximumBatchingWindowInSeconds to fill a batch, runs up to the mapping's
ScalingConfig.MaximumConcurrency batches at once (Lambda's poller starts with five
concurrent batches when there is no maximum: so does this one), deletes what succeeded and
leaves what failed for redelivery. With ReportBatchItemFailures only the reported messages are left;
when the handler raises (or reports an unknown id) the whole batch is left. Left messages
are made visible again after `retry_visibility_seconds` (instead of the queue's full
VisibilityTimeout) so the queue's RedrivePolicy moves poison messages to the DLQ quickly.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .iam import Role, acting_as
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


def sqs_record(message: dict[str, Any], source_arn: str, region: str) -> dict[str, Any]:
    """An SQS ReceiveMessage result -> a Lambda SQS event record."""
    attrs = message.get("Attributes") or {}
    record_attrs = {
        key: attrs[key]
        for key in (
            "ApproximateReceiveCount",
            "SentTimestamp",
            "SenderId",
            "ApproximateFirstReceiveTimestamp",
            "SequenceNumber",
            "MessageGroupId",
            "MessageDeduplicationId",
            "AWSTraceHeader",
            "DeadLetterQueueSourceArn",
        )
        if key in attrs
    }
    message_attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
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
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": record_attrs,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


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
        queue_url: str,
        region: str,
        client_factory: Callable[[], Any],
        invoke: Callable[[str, Any], Any],
        retry_visibility_seconds: int = 1,
        role: Role | None = None,
    ) -> None:
        super().__init__(name=f"sqs-pump-{source.function}-{source.queue}", daemon=True)
        self.source = source
        self.queue_url = queue_url
        self.region = region
        self._client_factory = client_factory
        self._invoke = invoke
        self.retry_visibility_seconds = retry_visibility_seconds
        # Lambda's poller receives and deletes with the function's role.
        self.role = role
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
        client = self._client_factory()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix=self.name) as batches:
            while not self._stop_event.is_set():
                # a free slot first: messages are received only when a batch can start
                if not self._slots.acquire(timeout=0.5):
                    continue
                try:
                    batch = self._collect(client)
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
                batches.submit(self._run_batch, client, *batch)
        # (leaving the executor waited for the running batches, their deletes included)

    def _run_batch(
        self, client: Any, messages: list[dict[str, Any]], records: list[dict[str, Any]]
    ) -> None:
        try:
            self._process(client, messages, records)
        except Exception:
            if not self._stop_event.is_set():
                log.exception("SQS pump for %s failed a batch", self.source.queue)
        finally:
            with self._count_lock:
                self._running -= 1
            self._slots.release()

    def _receive(self, client: Any, count: int, wait: float) -> list[dict[str, Any]]:
        with acting_as(self.role):
            response = client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=max(1, min(10, count)),
                WaitTimeSeconds=max(0, round(wait)),
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        return response.get("Messages") or []

    def _collect(self, client: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        """A batch as Lambda's poller fills it: (messages, their event records), or None."""
        source = self.source
        messages = self._receive(client, source.batch_size, RECEIVE_WAIT_SECONDS)
        if not messages or self._stop_event.is_set():
            return None
        self._filling = True
        deadline = time.monotonic() + source.batching_window_s
        while len(messages) < source.batch_size and not self._stop_event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = self._receive(client, source.batch_size - len(messages), 0)
            messages.extend(more)
            if len(more) < 10:  # the queue has no more for now: let some arrive
                self._stop_event.wait(min(FILL_POLL_SECONDS, remaining))

        records, drop = [], []
        for message in messages:
            if is_s3_test_event(message.get("Body", "")):
                drop.append(message)
            else:
                records.append(sqs_record(message, source.queue_arn, self.region))
        if drop:
            self._delete_messages(client, drop)
        return (messages, records) if records else None

    def _process(
        self, client: Any, messages: list[dict[str, Any]], records: list[dict[str, Any]]
    ) -> None:
        source = self.source
        by_id = {m["MessageId"]: m for m in messages}
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
            self._delete_messages(client, succeeded)
        if retry:
            log.info(
                "%s: %d of %d messages left on %s for retry",
                source.function,
                len(retry),
                len(records),
                source.queue,
            )
            self._retry_soon(client, [by_id[i] for i in retry])

    def _delete_messages(self, client: Any, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            with acting_as(self.role):
                client.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(chunk)
                    ],
                )

    def _retry_soon(self, client: Any, messages: list[dict[str, Any]]) -> None:
        # A local shortcut (Lambda waits out the VisibilityTimeout), so not the function's call.
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            client.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "ReceiptHandle": m["ReceiptHandle"],
                        "VisibilityTimeout": self.retry_visibility_seconds,
                    }
                    for i, m in enumerate(chunk)
                ],
            )
