"""Circuit breaker, exception classification, deadline and per-loop clients."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from memlayer.ai.resilience import (
    CircuitBreaker,
    PerLoop,
    call_provider,
    classify_exception,
    classify_status,
)
from memlayer.errors import ProviderError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_state_machine():
    clock = Clock()
    breaker = CircuitBreaker("x", failure_threshold=3, reset_timeout=10, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # a success resets the consecutive count
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    with pytest.raises(ProviderError) as info:
        breaker.before_call()
    assert (info.value.reason, info.value.retryable) == ("circuit_open", True)

    clock.now = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow() is True  # the single probe
    assert breaker.allow() is False  # everyone else waits for it
    breaker.record_failure()  # failed probe: open again, for a full cool-down
    assert breaker.state == "open" and not breaker.allow()

    clock.now = 20.0
    assert breaker.allow() is True
    breaker.record_success()
    assert breaker.state == "closed" and breaker.consecutive_failures == 0


def test_breaker_lost_probe_does_not_block_forever():
    clock = Clock()
    breaker = CircuitBreaker("x", failure_threshold=1, reset_timeout=5, clock=clock)
    breaker.record_failure()
    clock.now = 5.0
    assert breaker.allow() is True  # probe starts, then its task is cancelled silently
    clock.now = 7.0
    assert breaker.allow() is False
    clock.now = 10.0
    assert breaker.allow() is True  # stale probe: another may go


@pytest.mark.parametrize(
    ("status", "retryable", "reason"),
    [
        (400, False, "bad_request"),
        (401, False, "auth_failed"),
        (403, False, "permission_denied"),
        (404, False, "not_found"),
        (408, True, "request_timeout"),
        (409, True, "conflict"),
        (413, False, "request_too_large"),
        (429, True, "rate_limited"),
        (500, True, "server_error"),
        (503, True, "server_error"),
        (529, True, "overloaded"),
        (418, False, "http_418"),
    ],
)
def test_classify_status(status, retryable, reason):
    failure = classify_status(status)
    assert (failure.retryable, failure.reason, failure.status) == (retryable, reason, status)


def test_classify_transport_and_unknown_exceptions():
    request = httpx2.Request("POST", "http://fake")
    assert classify_exception(httpx2.ReadTimeout("t", request=request)).reason == "timeout"
    assert classify_exception(httpx2.ConnectError("c", request=request)).retryable is True
    assert classify_exception(TimeoutError()).retryable is True
    assert classify_exception(ProviderError("x", retryable=False)).retryable is False
    unknown = classify_exception(KeyError("k"))
    assert unknown.retryable is False and unknown.reason == "unexpected_error:KeyError"


def test_call_provider_deadline_and_bug_passthrough():
    breaker = CircuitBreaker("x", failure_threshold=5)

    async def hang() -> None:
        await asyncio.sleep(5)

    with pytest.raises(ProviderError) as info:
        asyncio.run(call_provider(breaker, hang, deadline=0.02))
    assert (info.value.reason, info.value.retryable) == ("deadline_exceeded", True)
    assert breaker.consecutive_failures == 1

    async def bug() -> None:
        raise KeyError("our bug, not the provider's")

    with pytest.raises(KeyError):
        asyncio.run(call_provider(breaker, bug, deadline=1))

    async def fine() -> str:
        return "ok"

    assert asyncio.run(call_provider(breaker, fine, deadline=1)) == "ok"
    assert breaker.consecutive_failures == 0


def test_per_loop_builds_one_client_per_event_loop():
    made: list[object] = []

    def factory() -> object:
        made.append(object())
        return made[-1]

    clients = PerLoop(factory)

    async def twice() -> tuple[object, object]:
        return clients.get(), clients.get()

    a, b = asyncio.run(twice())
    c, _ = asyncio.run(twice())
    assert a is b and c is not a and len(made) == 2
