"""Failure handling shared by the AI providers.

Retries: the anthropic and openai SDKs already retry 408/409/429/5xx responses, timeouts and
connection errors with exponential backoff and jitter, honouring `retry-after(-ms)` headers.
We configure that through `max_retries` (settings.provider_max_retries) and the per-attempt
`timeout` (settings.provider_timeout_seconds) instead of re-implementing it. What the SDKs do
not give us, and lives here:

- `CircuitBreaker`: after N consecutive retryable failures (the SDK's retries already spent),
  stop calling the provider for a cool-down, then let one probe through (half-open).
- `classify_exception`: SDK exception → (retryable, short reason) for `ProviderError`.
- `call_deadline`: an overall bound for one logical call (all attempts plus backoff). The
  anthropic SDK honours any `retry-after` a 429 sends, however long; inside a Lambda we would
  rather give the message back to SQS than sleep through the function's timeout.
- `PerLoop`: SDK clients hold an HTTP connection pool bound to the event loop that used it;
  handlers that call `asyncio.run` per invocation get a fresh client per loop.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from memlayer.errors import ProviderError

T = TypeVar("T")

BreakerState = Literal["closed", "open", "half_open"]

CIRCUIT_OPEN = "circuit_open"


class CircuitBreaker:
    """Consecutive-failure circuit breaker.

    closed → (``failure_threshold`` consecutive failures) → open → (``reset_timeout`` seconds)
    → half_open: exactly one probe call is let through; its success closes the circuit, its
    failure re-opens it for another cool-down. A probe that never reports back (a cancelled
    task) stops blocking others after ``reset_timeout``.

    Usage::

        breaker.before_call()          # raises ProviderError("circuit_open", retryable=True)
        try:
            result = await call()
        except RetryableThing:
            breaker.record_failure()
            raise
        breaker.record_success()       # also for non-retryable answers: the provider is up

    Not thread-safe across OS threads by design of its callers (one event loop per container),
    but guarded by a lock anyway since it is cheap.
    """

    def __init__(
        self,
        name: str = "provider",
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout < 0:
            raise ValueError("reset_timeout must not be negative")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_started: float | None = None

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state_locked(self._clock())

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def _state_locked(self, now: float) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if now - self._opened_at >= self.reset_timeout:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether a call may go out now. In half-open state only the first caller gets True."""
        with self._lock:
            now = self._clock()
            state = self._state_locked(now)
            if state == "closed":
                return True
            if state == "open":
                return False
            probe_stale = self._probe_started is not None and now - self._probe_started >= max(
                self.reset_timeout, 1e-9
            )
            if self._probe_started is None or probe_stale:
                self._probe_started = now
                return True
            return False

    def before_call(self) -> None:
        """Raise `ProviderError("circuit_open", retryable=True)` unless a call may go out."""
        if not self.allow():
            raise ProviderError(CIRCUIT_OPEN, retryable=True)

    def record_success(self) -> None:
        """The provider answered (even with a non-retryable 4xx): close the circuit."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probe_started = None

    def record_failure(self) -> None:
        """A retryable failure (after the SDK's own retries). Opens the circuit at the threshold;
        a failed half-open probe re-opens it at once."""
        with self._lock:
            now = self._clock()
            self._failures += 1
            probing = self._opened_at is not None
            if probing or self._failures >= self.failure_threshold:
                self._opened_at = now
                self._probe_started = None

    def reset(self) -> None:
        self.record_success()


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(
    name: str, *, failure_threshold: int = 5, reset_timeout: float = 30.0
) -> CircuitBreaker:
    """The container-wide breaker for one provider ("anthropic", "openai"), created on first use,
    so analysis and chat against the same provider share its health."""
    with _breakers_lock:
        breaker = _breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(
                name, failure_threshold=failure_threshold, reset_timeout=reset_timeout
            )
            _breakers[name] = breaker
        return breaker


@dataclass(frozen=True, slots=True)
class Failure:
    """How one provider exception should be handled."""

    retryable: bool
    reason: str
    status: int | None = None


_STATUS_REASONS = {
    400: "bad_request",
    401: "auth_failed",
    402: "payment_required",
    403: "permission_denied",
    404: "not_found",
    408: "request_timeout",
    409: "conflict",
    413: "request_too_large",
    422: "unprocessable",
    429: "rate_limited",
    529: "overloaded",
}
# 429s that waiting will not fix.
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})


def classify_status(status: int, *, error_code: str | None = None) -> Failure:
    """Retryable: 408, 409, 429 (except exhausted quota), 5xx. Everything else is not."""
    if status == 429 and error_code in _QUOTA_CODES:
        return Failure(False, "quota_exhausted", status)
    reason = _STATUS_REASONS.get(status) or ("server_error" if status >= 500 else f"http_{status}")
    retryable = status in (408, 409, 429) or status >= 500
    return Failure(retryable, reason, status)


def _sdk_errors(module_name: str) -> object | None:
    # Only look at SDKs that are already imported: an exception from one implies it is loaded,
    # and classifying must never pay for importing the other.
    return sys.modules.get(module_name)


def _error_code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None) or getattr(exc, "error_code", None)
    if isinstance(code, str):
        return code
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            for key in ("code", "type"):
                if isinstance(inner.get(key), str):
                    return inner[key]
    return None


def classify_exception(exc: BaseException) -> Failure:
    """Map an SDK (anthropic/openai), httpx or asyncio exception to retryable + reason.

    Timeouts, connection errors, 408/409/429/5xx are retryable; 4xx request/auth errors,
    response validation errors and anything unrecognised are not."""
    if isinstance(exc, ProviderError):
        return Failure(exc.retryable, exc.reason)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return Failure(True, "timeout")
    for module_name in ("anthropic", "openai"):
        sdk = _sdk_errors(module_name)
        if sdk is None:
            continue
        if isinstance(exc, sdk.APITimeoutError):  # type: ignore[attr-defined]
            return Failure(True, "timeout")
        if isinstance(exc, sdk.APIConnectionError):  # type: ignore[attr-defined]
            return Failure(True, "connection_error")
        if isinstance(exc, sdk.APIStatusError):  # type: ignore[attr-defined]
            return classify_status(int(exc.status_code), error_code=_error_code(exc))
        if isinstance(exc, sdk.APIResponseValidationError):  # type: ignore[attr-defined]
            return Failure(False, "invalid_response", getattr(exc, "status_code", None))
        retryable_cls = getattr(sdk, "RetryableError", None)
        if retryable_cls is not None and isinstance(exc, retryable_cls):
            return Failure(True, "retryable_error")
    for module_name in ("httpx2", "httpx"):
        http = sys.modules.get(module_name)
        if http is None:
            continue
        if isinstance(exc, http.TimeoutException):
            return Failure(True, "timeout")
        if isinstance(exc, http.TransportError):
            return Failure(True, "connection_error")
    if isinstance(exc, (ConnectionError, OSError)):
        return Failure(True, "connection_error")
    return Failure(False, f"unexpected_error:{type(exc).__name__}")


def is_provider_exception(exc: BaseException) -> bool:
    """Whether `exc` came from talking to a provider (as opposed to a bug in our code)."""
    if isinstance(exc, (ProviderError, asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return True
    for module_name in ("anthropic", "openai"):
        sdk = sys.modules.get(module_name)
        if sdk is not None:
            base = getattr(sdk, "AnthropicError", None) or getattr(sdk, "OpenAIError", None)
            if base is not None and isinstance(exc, base):
                return True
    for module_name in ("httpx2", "httpx"):
        http = sys.modules.get(module_name)
        if http is not None and isinstance(exc, http.HTTPError):
            return True
    return False


def call_deadline(timeout: float, max_retries: int) -> float:
    """An upper bound for one logical call: every attempt timing out, plus the SDK's capped
    backoff (≤ 8 s per retry), plus slack."""
    return timeout * (max_retries + 1) + 8.0 * max_retries + 1.0


async def call_provider(
    breaker: CircuitBreaker, call: Callable[[], Awaitable[T]], *, deadline: float
) -> T:
    """Run one provider call (the SDK retries inside it) under the breaker and a deadline.

    Raises `ProviderError`: "circuit_open"/"deadline_exceeded"/retryable classifications with
    retryable=True (these count as breaker failures), or a non-retryable classification
    (401, 400…) with retryable=False (the provider answered, so the breaker counts a success).
    Exceptions that do not come from the provider (bugs) propagate unchanged."""
    breaker.before_call()
    scope = asyncio.timeout(deadline)
    try:
        async with scope:
            result = await call()
    except Exception as exc:
        if isinstance(exc, TimeoutError) and scope.expired():
            breaker.record_failure()
            raise ProviderError("deadline_exceeded", retryable=True) from exc
        if not is_provider_exception(exc):
            raise
        failure = classify_exception(exc)
        if failure.retryable:
            breaker.record_failure()
        else:
            breaker.record_success()
        raise ProviderError(failure.reason, retryable=failure.retryable) from exc
    breaker.record_success()
    return result


class PerLoop(Generic[T]):
    """Lazily builds one value (an SDK client) per running event loop.

    An httpx connection pool created under one `asyncio.run` must not be used from another loop;
    handlers may run each invocation in a new loop, so the client is rebuilt when the loop
    changes and reused while it does not."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._loop: weakref.ReferenceType[asyncio.AbstractEventLoop] | None = None
        self._value: T | None = None

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        if self._value is None or self._loop is None or self._loop() is not loop:
            self._value = self._factory()
            self._loop = weakref.ref(loop)
        return self._value
