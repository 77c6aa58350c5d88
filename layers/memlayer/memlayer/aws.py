"""boto3 clients, built once per container. Only the data-access modules (storage, queues,
blobs, push) use these; nothing above them touches boto3."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import update_wrapper
from typing import Any

from memlayer.settings import get_settings


class BuiltOnce:
    """`functools.cache` for client factories, building each client once even when threads ask
    for it at the same moment: a boto3 client costs tens of milliseconds of CPU, and the first
    concurrent requests of a container (`asyncio.to_thread` sends, the local cloud's threads)
    each built their own. A client already built is returned without taking the lock."""

    def __init__(self, build: Callable[..., Any]) -> None:
        self._build = build
        self._built: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()
        update_wrapper(self, build)

    def __call__(self, *args: Any) -> Any:
        built = self._built.get(args)
        if built is None:
            with self._lock:
                built = self._built.get(args)
                if built is None:
                    built = self._built[args] = self._build(*args)
        return built

    def cache_clear(self) -> None:
        self._built.clear()


@BuiltOnce
def client(service: str, endpoint_url: str | None = None) -> Any:
    # lazy: boto3 (~0.3 s) is imported with the first client, on a request, not during init
    import boto3
    from botocore.config import Config

    settings = get_settings()
    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=2,
        read_timeout=10,
        max_pool_connections=32,
        signature_version="s3v4" if service == "s3" else None,
    )
    session: Any = boto3.session.Session()
    return session.client(
        service,
        region_name=settings.aws_region,
        endpoint_url=endpoint_url or settings.aws_endpoint_url,
        config=config,
    )


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


# Errors that say "try again shortly", as AWS documents them (after botocore's own retries).
_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TransactionInProgressException",
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is AWS being briefly unavailable (throttled, a lost transaction race, a
    5xx, a timeout or a dropped connection) rather than a bug: the caller may retry."""
    # lazy: as in `client`; an AWS error exists only once a client did
    from botocore.exceptions import ClientError, HTTPClientError

    if isinstance(exc, HTTPClientError):  # timeouts, refused and dropped connections
        return True
    if not isinstance(exc, ClientError):
        return False
    code = error_code(exc)
    if code == "TransactionCanceledException":
        reasons = {r.get("Code") for r in exc.response.get("CancellationReasons", [])}
        return "TransactionConflict" in reasons and reasons <= {"TransactionConflict", "None"}
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code in _TRANSIENT_CODES or status >= 500
