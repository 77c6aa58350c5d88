"""Fault injection at the AWS layer, through botocore's `before-send` hook (registered first, ahead
of the local cloud's in-process transport to moto) on the clients the
code really uses (`memlayer.aws.client`, shared by the local cloud's in-process functions).

A matching request never reaches moto: the hook answers it with the HTTP response AWS sends for
that fault (a throttled DynamoDB call, a cancelled transaction, an SQS or S3 5xx) or raises
the timeout botocore raises, so botocore parses it and runs its own retries exactly as it
would against AWS. Rules say which operation fails, how, and how many times."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

Fault = Literal["throttle", "conflict", "server_error", "timeout"]


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


@dataclass
class Rule:
    service: str  # botocore service id in events: dynamodb, sqs, s3
    operation: str  # e.g. TransactWriteItems, SendMessage, DeleteObjects
    fault: Fault
    times: int | None = None  # None: until the harness is closed
    matching: str | None = None  # only requests whose body contains this
    injected: int = 0

    def take(self, body: bytes) -> bool:
        if self.times is not None and self.injected >= self.times:
            return False
        if self.matching is not None and self.matching.encode() not in body:
            return False
        self.injected += 1
        return True


@dataclass
class Faults:
    rules: list[Rule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        service: str,
        operation: str,
        fault: Fault,
        *,
        times: int | None = None,
        matching: str | None = None,
    ) -> Rule:
        rule = Rule(service, operation, fault, times, matching)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def hook(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        _, service, operation = event_name.split(".", 2)
        body = request.body if isinstance(request.body, bytes) else b""
        with self._lock:
            rule = next(
                (
                    r
                    for r in self.rules
                    if r.service == service and r.operation == operation and r.take(body)
                ),
                None,
            )
        if rule is None:
            return None
        url = request.url
        # botocore calls every before-send handler; the local cloud's in-process transport is
        # one of them: pointing the request elsewhere keeps it from reaching moto.
        request.url = "http://faults.invalid/"
        if rule.fault == "timeout":
            raise ReadTimeoutError(endpoint_url=url)
        status, headers, body = _response(service, rule.fault, request)
        return AWSResponse(url, status, headers, _Raw(body))  # type: ignore[arg-type]


def _response(service: str, fault: Fault, request: Any) -> tuple[int, dict[str, str], bytes]:
    if service == "dynamodb":
        prefix = "com.amazonaws.dynamodb.v20120810#"
        if fault == "throttle":
            error = {
                "__type": f"{prefix}ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput for the table was "
                "exceeded. (injected)",
            }
            return 400, {"content-type": "application/x-amz-json-1.0"}, json.dumps(error).encode()
        if fault == "conflict":
            items = json.loads(request.body or b"{}").get("TransactItems", [])
            reasons = [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (len(items) - 1)
            error = {
                "__type": f"{prefix}TransactionCanceledException",
                "message": "Transaction cancelled, please refer cancellation reasons for specific"
                " reasons [TransactionConflict] (injected)",
                "CancellationReasons": reasons,
            }
            return 400, {"content-type": "application/x-amz-json-1.0"}, json.dumps(error).encode()
        error = {"__type": f"{prefix}InternalServerError", "message": "injected"}
        return 500, {"content-type": "application/x-amz-json-1.0"}, json.dumps(error).encode()
    if service == "sqs":
        error = {"__type": "com.amazonaws.sqs#InternalError", "message": "injected"}
        return 500, {"content-type": "application/x-amz-json-1.0"}, json.dumps(error).encode()
    code = "SlowDown" if fault == "throttle" else "InternalError"
    body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
    return 503 if code == "SlowDown" else 500, {"content-type": "application/xml"}, body


@contextmanager
def injected(*services: str) -> Iterator[Faults]:
    """Faults for the process's shared clients of these services, removed on exit."""
    from memlayer import aws

    faults = Faults()
    clients = [aws.client(service) for service in services]
    for client in clients:
        client.meta.events.register_first("before-send", faults.hook, unique_id="memlayer-faults")
    try:
        yield faults
    finally:
        for client in clients:
            client.meta.events.unregister("before-send", unique_id="memlayer-faults")
