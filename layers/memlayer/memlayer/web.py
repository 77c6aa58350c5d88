"""The one place HTTP is shaped: app factory, request-id/timing middleware, the error mapping
(`{"error", "detail", "request_id"}` for every failure), the credential dependencies
(`current_user`: any valid credential, `writer`: needs the write scope, `admin`: needs the
admin role, everyone else sees 404 so admin paths do not advertise), and the Mangum handler."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from mangum import Mangum
from starlette.exceptions import HTTPException as StarletteHTTPException

from memlayer import aws, secrets
from memlayer.api.common import ErrorBody
from memlayer.auth import Principal
from memlayer.errors import Forbidden, MemlayerError, NotFound, Unauthorized
from memlayer.ids import new_id
from memlayer.observability import logger, request_id_var
from memlayer.runloop import thread_loop
from memlayer.services.api_keys import authenticate
from memlayer.services.limits import check_rate
from memlayer.storage.errors import StorageUnavailable


def _ask_modules_for_pydantic_v1() -> None:
    """FastAPI asks of every route's parameter and response annotation whether it is a
    pydantic.v1 model (to refuse it), and imports `pydantic.v1` to ask: ≈ 20 ms of every HTTP
    function's init, for models memlayer does not have. A class can be a v1 model only once
    `pydantic.v1` is imported, so the question goes to `sys.modules`: the same answers, and
    the import only where something else made it (a test pins both)."""
    from fastapi._compat import shared

    def is_pydantic_v1_model_class(cls: Any) -> bool:
        v1 = sys.modules.get("pydantic.v1")
        return v1 is not None and shared.lenient_issubclass(cls, v1.BaseModel)

    shared.is_pydantic_v1_model_class = is_pydantic_v1_model_class


_ask_modules_for_pydantic_v1()

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_BODY_BYTES = 1_048_576
RETRY_AFTER_SECONDS = 1


class RequestContext:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): assigns the request id (the
    client's `X-Request-ID` when well-formed, else API Gateway's, else a new one), refuses
    oversized bodies, and stamps `X-Request-ID` and `X-Process-Time` on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        client_id = headers.get("x-request-id", "")
        event = scope.get("aws.event") or {}
        request_id = (
            client_id
            if _CLIENT_REQUEST_ID.match(client_id)
            else event.get("requestContext", {}).get("requestId") or new_id()
        )
        token = request_id_var.set(request_id)
        logger.set_correlation_id(request_id)
        status_holder = {"status": 0}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                elapsed_ms = (time.perf_counter() - started) * 1000
                extra = [
                    (b"x-request-id", request_id.encode()),
                    (b"x-process-time", f"{elapsed_ms:.2f}ms".encode()),
                ]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            length = headers.get("content-length")
            if length is None:
                # No declared length (chunked): read up to the limit, then replay what came.
                receive = await _buffered(receive)
                too_large = receive is None
            else:
                too_large = length.isdigit() and int(length) > MAX_BODY_BYTES
            if too_large:
                response = error_response(
                    413, "payload_too_large", f"the request body is over {MAX_BODY_BYTES} bytes"
                )
                await response(scope, _no_body, send_with_headers)
                return
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            if status_holder["status"]:
                logger.exception("error after the response started")
            elif aws.is_transient(exc) or isinstance(exc, StorageUnavailable):
                # AWS throttled or timed out past the SDK's retries, or the database is briefly
                # unavailable: nothing is half-done that a retry cannot finish (writes are
                # transactions; creates are idempotent by key).
                logger.warning("backing service unavailable", error=f"{type(exc).__name__}: {exc}")
                response = error_response(
                    503,
                    "service_unavailable",
                    "a backing service is briefly unavailable; retry",
                    {"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
                await response(scope, receive, send_with_headers)
            else:
                # Anything unexpected still answers in the one error shape (never a bare page).
                logger.exception("unhandled error")
                response = error_response(500, "internal_error", "an unexpected error occurred")
                await response(scope, receive, send_with_headers)
        finally:
            logger.info(
                "request",
                method=scope.get("method"),
                path=scope.get("path"),
                status=status_holder["status"],
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            request_id_var.reset(token)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _buffered(receive: Any) -> Any:
    """A `receive` that replays the whole body, read here; None when it exceeds the limit."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away: let the app see it
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    async def replayed() -> Message:
        return replay.pop() if replay else await receive()

    return replayed


def error_response(
    status: int, kind: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": kind, "detail": detail, "request_id": request_id_var.get()},
        status_code=status,
        headers=headers,
    )


async def _memlayer_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MemlayerError)
    return error_response(exc.status, exc.kind, jsonable_encoder(exc.detail), exc.headers)


def validation_detail(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """The `detail` of a validation_error: where, what and which check, per failed field."""
    return [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in errors
    ]


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "validation_error", validation_detail(exc.errors()))


_HTTP_KINDS = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = _HTTP_KINDS.get(exc.status_code, "http_error")
    return error_response(exc.status_code, kind, exc.detail, dict(exc.headers or {}))


ERROR_DESCRIPTIONS = {
    400: "Malformed request (an unreadable body or cursor)",
    401: "Missing or invalid credentials",
    403: "The credential may not do this (a read-only API key, or an API key where a session "
    "is needed)",
    404: "Not found (or not the caller's)",
    409: "Conflict (an Idempotency-Key reused with another body, or a limit on live items)",
    412: "The memory changed (If-Match names another version)",
    413: "The body (at most 1 MiB, also chunked) or the declared file is too large",
    422: "Invalid request; `detail` lists each field and why",
    429: "Rate or quota exceeded; see Retry-After",
    503: "A backing service is briefly unavailable; see Retry-After",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the one error body."""
    return {
        status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


def client_ip(request: Request) -> str:
    event = request.scope.get("aws.event") or {}
    source = event.get("requestContext", {}).get("http", {}).get("sourceIp")
    if source:
        return str(source)
    return request.client.host if request.client else "unknown"


async def current_user(request: Request) -> Principal:
    principal = await authenticate(request.headers.get("authorization"))
    await check_rate(principal.user_id, client_ip(request))
    return principal


async def writer(principal: Principal = Depends(current_user)) -> Principal:
    if "write" not in principal.scopes:
        raise Forbidden("this API key is read-only")
    return principal


async def admin(request: Request) -> Principal:
    try:
        principal = await authenticate(request.headers.get("authorization"))
    except Unauthorized:
        raise NotFound("not found") from None
    if not principal.is_admin:
        raise NotFound("not found")
    return principal


def _route_errors(route: APIRoute) -> set[int]:
    """The error statuses a route can answer, from what it depends on: every route may be
    invalid (422) or meet an AWS outage (503); credentials add 401 and 429 (rate limits,
    quotas), a write scope 403, a body 400 and 413, a path parameter 404, and admin routes
    answer 404 to everyone else. Routes declare anything else themselves (`errors(...)`)."""
    calls: set[Any] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        calls.add(dependant.call)
        pending += dependant.dependencies
    statuses = {422, 503}
    if current_user in calls:
        statuses |= {401, 429}
    if writer in calls:
        statuses.add(403)
    if admin in calls or route.dependant.path_params:
        statuses.add(404)
    if route.body_field is not None:
        statuses |= {400, 413}
    return statuses


def create_app(*routers: APIRouter, title: str) -> FastAPI:
    app = FastAPI(title=title, version="1.0.0", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(MemlayerError, _memlayer_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute):
                route.responses = {**errors(*sorted(_route_errors(route))), **route.responses}
        app.include_router(router)
    app.add_middleware(RequestContext)
    return app


def lambda_handler(app: FastAPI) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    adapter = Mangum(app, lifespan="off")

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        thread_loop()  # Mangum runs on the thread's current loop; make sure there is one
        # here, not inside the loop: a (rare) fetch blocks no request
        secrets.refresh(context.function_name)
        return adapter(event, context)

    return logger.inject_lambda_context(
        handler, correlation_id_path=correlation_paths.API_GATEWAY_HTTP
    )
