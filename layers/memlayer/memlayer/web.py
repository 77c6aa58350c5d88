"""The one place HTTP is shaped: app factory, request-id/timing middleware, the error mapping
(`{"error", "detail", "request_id"}` for every failure), and the Mangum handler."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from memlayer.errors import MemlayerError
from memlayer.ids import new_id
from memlayer.observability import logger, request_id_var

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_BODY_BYTES = 1_048_576


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
            length = headers.get("content-length", "0")
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                response = error_response(413, "payload_too_large", "request body is too large")
                await response(scope, receive, send_with_headers)
                return
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Anything unexpected still answers in the one error shape (never a bare 500 page).
            logger.exception("unhandled error")
            if not status_holder["status"]:
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


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    return error_response(422, "validation_error", detail)


_HTTP_KINDS = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = _HTTP_KINDS.get(exc.status_code, "http_error")
    return error_response(exc.status_code, kind, exc.detail, dict(exc.headers or {}))


def create_app(*routers: APIRouter, title: str) -> FastAPI:
    app = FastAPI(
        title=title,
        version="1.0.0",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        responses={
            401: {"description": "Missing or invalid credentials"},
            422: {"description": "Invalid request"},
        },
    )
    app.add_exception_handler(MemlayerError, _memlayer_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for router in routers:
        app.include_router(router)
    app.add_middleware(RequestContext)
    return app


def lambda_handler(app: FastAPI) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    from aws_lambda_powertools.logging import correlation_paths
    from mangum import Mangum

    from memlayer import secrets
    from memlayer.runloop import thread_loop

    adapter = Mangum(app, lifespan="off")

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        thread_loop()  # Mangum runs on the thread's current loop; make sure there is one
        secrets.refresh()  # here, not inside the loop: a (rare) fetch blocks no request
        return adapter(event, context)

    return logger.inject_lambda_context(
        handler, correlation_id_path=correlation_paths.API_GATEWAY_HTTP
    )
