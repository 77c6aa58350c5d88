"""Typed errors. Each carries its HTTP status and short kind; `memlayer.http` maps them to
`{"error", "detail", "request_id"}` in one place."""

from __future__ import annotations

from typing import Any


class MemlayerError(Exception):
    status = 500
    kind = "internal_error"

    def __init__(self, detail: Any = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail if isinstance(detail, str) else self.kind)
        self.detail = detail if detail is not None else self.kind.replace("_", " ")
        self.headers = headers or {}


class BadRequest(MemlayerError):
    status = 400
    kind = "bad_request"


class Unauthorized(MemlayerError):
    status = 401
    kind = "unauthorized"

    def __init__(self, detail: Any = "invalid or missing credentials") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(MemlayerError):
    status = 403
    kind = "forbidden"


class NotFound(MemlayerError):
    status = 404
    kind = "not_found"


class Conflict(MemlayerError):
    status = 409
    kind = "conflict"


class PreconditionFailed(MemlayerError):
    status = 412
    kind = "precondition_failed"


class PayloadTooLarge(MemlayerError):
    status = 413
    kind = "payload_too_large"


class ValidationFailed(MemlayerError):
    status = 422
    kind = "validation_error"


class QuotaExceeded(MemlayerError):
    status = 429
    kind = "quota_exceeded"

    def __init__(self, detail: Any, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, int(retry_after)))})


class RateLimited(QuotaExceeded):
    kind = "rate_limited"


class ServiceUnavailable(MemlayerError):
    status = 503
    kind = "service_unavailable"


class ProviderError(Exception):
    """An AI provider or fetch failed. `retryable` says whether the queue should try again."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
