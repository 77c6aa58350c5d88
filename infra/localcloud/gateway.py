"""The local API Gateway: one ASGI app serving

* the template's HTTP API routes (payload format 2.0 events to the routed function),
* its WebSocket APIs (`$connect` / route selection / `$disconnect` events),
* the API Gateway management API (`/@connections/{id}`) used by `apigatewaymanagementapi`,
* a few local admin endpoints under `/_local/`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import fnmatch
import json
import logging
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

from .runtime import FunctionError
from .stack import HttpApiSpec, HttpRoute, Stack, WsApiSpec

log = logging.getLogger("localcloud")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # HTTP API payload limit
MAX_RESPONSE_BYTES = 6 * 1024 * 1024  # Lambda synchronous response limit
MAX_WS_FRAME_BYTES = 128 * 1024  # WebSocket message / PostToConnection limit
_TEXT_TYPES = ("json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "csv", "graphql")
_CONNECTIONS = re.compile(r"^(?P<prefix>.*)/@connections/(?P<id>[^/]+)/?$")


_ID_ALPHABET = string.ascii_letters + string.digits


def _random_id(length: int) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _request_id() -> str:
    """Looks like API Gateway's request ids ('JKJaXmPLvHcESHA=')."""
    return _random_id(14) + "="


def _connection_id() -> str:
    """Looks like API Gateway's connection ids ('L0SM9cOFvHcCIhw=')."""
    return _random_id(15) + "="


class _HandshakeNoise(logging.Filter):
    """uvicorn logs a refused upgrade answered with an HTTP response as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing handshake" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_HandshakeNoise())


def _clf_time(now: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _headers_dict(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or []:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _is_text(content_type: str) -> bool:
    content_type = content_type.lower()
    return (
        not content_type
        or content_type.startswith("text/")
        or any(token in content_type for token in _TEXT_TYPES)
    )


def _query_parameters(raw: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    return params


def _origin_allowed(origin: str, allowed: list[str]) -> bool:
    return any(pattern == "*" or fnmatch.fnmatchcase(origin, pattern) for pattern in allowed)


# --------------------------------------------------------------------------- HTTP events


def http_event(
    route: HttpRoute,
    api: HttpApiSpec,
    scope: Scope,
    body: bytes,
    path_parameters: dict[str, str],
    *,
    raw_path: str,
    stage: str,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload format 2.0 event for this request."""
    now = time.time()
    headers = _headers_dict(scope)
    cookie_header = headers.pop("cookie", None)
    client = scope.get("client") or ("127.0.0.1", 0)
    server = scope.get("server") or ("127.0.0.1", 80)
    headers.setdefault("x-forwarded-for", client[0])
    headers.setdefault("x-forwarded-port", str(server[1]))
    headers.setdefault("x-forwarded-proto", scope.get("scheme", "http"))
    headers.setdefault("x-amzn-trace-id", f"Root=1-{int(now):08x}-{secrets.token_hex(12)}")
    host = headers.get("host", f"{server[0]}:{server[1]}")
    raw_query = scope.get("query_string", b"").decode("latin-1")
    request_id = _request_id()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookie_header:
        event["cookies"] = [c.strip() for c in cookie_header.split(";") if c.strip()]
    event["headers"] = headers
    query = _query_parameters(raw_query)
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": "123456789012",
        "apiId": api.api_id,
        "domainName": host,
        "domainPrefix": host.split(".")[0].split(":")[0],
        "http": {
            "method": scope["method"],
            "path": raw_path,
            "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
            "sourceIp": client[0],
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.route_key,
        "stage": stage,
        "time": _clf_time(now),
        "timeEpoch": int(now * 1000),
    }
    if body:
        if _is_text(headers.get("content-type", "")):
            try:
                event["body"] = body.decode("utf-8")
                event["isBase64Encoded"] = False
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode()
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    if path_parameters:
        event["pathParameters"] = {k: unquote(v) for k, v in path_parameters.items()}
    return event


def http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A payload format 2.0 Lambda result -> (status, headers, body)."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # 2.0 infers a response: 200, JSON, the result as the body.
        body = result if isinstance(result, str) else json.dumps(result)
        return 200, [("content-type", "application/json")], body.encode()
    status = int(result["statusCode"])
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name).lower(), str(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values or []:
            headers.append((str(name).lower(), str(value)))
    for cookie in result.get("cookies") or []:
        headers.append(("set-cookie", str(cookie)))
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = (raw if isinstance(raw, str) else json.dumps(raw)).encode("utf-8")
    return status, headers, body


# --------------------------------------------------------------------------- WebSocket


@dataclass
class Connection:
    connection_id: str
    api: WsApiSpec
    send: Send
    source_ip: str
    user_agent: str
    headers: dict[str, str]
    connected_at: float = field(default_factory=time.time)
    last_active_at: float = field(default_factory=time.time)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    open: bool = True

    async def send_data(self, data: bytes) -> None:
        async with self.lock:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                await self.send({"type": "websocket.send", "bytes": data})
            else:
                await self.send({"type": "websocket.send", "text": text})
        self.last_active_at = time.time()


def _select_route(expression: str, body: str) -> str | None:
    """Evaluate `$request.body.a.b` against a JSON message body."""
    if not expression.startswith("$request.body."):
        return None
    try:
        value: Any = json.loads(body)
    except ValueError:
        return None
    for part in expression.removeprefix("$request.body.").split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, str) else None


# --------------------------------------------------------------------------- the app


class Cloud(Protocol):
    """What the gateway needs of the local cloud (`cloud.LocalCloud`)."""

    stack: Stack
    executor: Executor
    stage_prefix: bool
    http_timeout: float | None

    def invoke(self, function: str, event: Any = None) -> Any: ...

    def fire_schedule(self, name: str) -> list[dict[str, Any]]: ...

    def queue_counts(self, queues: list[str] | None = None) -> dict[str, dict[str, int]]: ...

    def describe(self) -> dict[str, Any]: ...


class Gateway:
    """ASGI application. `cloud` provides invocation and the resolved stack."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.stack = cloud.stack
        self.connections: dict[str, Connection] = {}
        self.ws_paths: dict[str, WsApiSpec] = {}
        apis = list(self.stack.ws_apis.values())
        for api in apis:
            self.ws_paths[f"/ws/{api.logical_id}"] = api
        if len(apis) == 1:
            self.ws_paths["/ws"] = apis[0]

    def ws_path(self, api: WsApiSpec) -> str:
        return "/ws" if len(self.stack.ws_apis) == 1 else f"/ws/{api.logical_id}"

    async def _call(self, function: str, event: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.cloud.executor, self.cloud.invoke, function, event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    # ------------------------------------------------------------------ HTTP

    @staticmethod
    async def _respond(
        send: Send, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        clean = [(k, v) for k, v in headers if k not in ("content-length", "transfer-encoding")]
        clean.append(("content-length", str(len(body))))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in clean],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _json(
        self,
        send: Send,
        status: int,
        payload: Any,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = [("content-type", "application/json"), *(extra or [])]
        await self._respond(send, status, headers, body)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= MAX_REQUEST_BYTES:
                chunks.append(chunk)
            if not message.get("more_body"):
                break
        if size > MAX_REQUEST_BYTES:
            await self._json(send, 413, {"message": "Request Entity Too Large"})
            return
        body = b"".join(chunks)
        path: str = scope["path"]
        raw_path = scope.get("raw_path")
        encoded_path = raw_path.decode("latin-1") if raw_path else path

        if path == "/_local" or path.startswith("/_local/"):
            await self._admin(scope, path, body, send)
            return
        match = _CONNECTIONS.match(encoded_path)
        if match:
            await self._management(scope["method"], unquote(match.group("id")), body, send)
            return
        await self._api_request(scope, body, send)

    async def _api_request(self, scope: Scope, body: bytes, send: Send) -> None:
        started = time.monotonic()
        method: str = scope["method"].upper()
        full_path: str = scope["path"]
        headers = _headers_dict(scope)
        stage = "$default"
        path = full_path
        if self.cloud.stage_prefix:
            # Mimic a named stage: served under /<stage>, and rawPath keeps the prefix.
            stages = {api.stage for api in self.stack.http_apis.values()}
            first = "/" + full_path.lstrip("/").split("/", 1)[0]
            if first[1:] in stages and first[1:] != "$default":
                stage = first[1:]
                path = full_path[len(first) :] or "/"
        route, params = self.stack.match_route(method, path)
        origin = headers.get("origin")
        preflight = method == "OPTIONS" and origin and "access-control-request-method" in headers
        if preflight:
            api = self._api_for_preflight(path)
            if api is not None and api.cors is not None:
                await self._respond(send, 204, self._preflight_headers(api.cors, headers), b"")
                return
        if route is None or (self.cloud.stage_prefix and stage == "$default" and self._named()):
            log.info("%s %s -> 404 (no route)", method, full_path)
            await self._json(send, 404, {"message": "Not Found"})
            return
        api = self.stack.http_apis[route.api]
        event = http_event(route, api, scope, body, params or {}, raw_path=full_path, stage=stage)
        try:
            result = await asyncio.wait_for(
                self._call(route.function, event),
                timeout=min(self.cloud.http_timeout, route.timeout_ms / 1000)
                if self.cloud.http_timeout
                else None,
            )
            status, out_headers, out_body = http_response(result)
            if len(out_body) > MAX_RESPONSE_BYTES:
                raise ValueError("response body exceeds Lambda's 6 MB limit")
        except TimeoutError:
            log.error("%s %s -> %s timed out", method, full_path, route.function)
            status, out_headers, out_body = (
                503,
                [("content-type", "application/json")],
                b'{"message":"Service Unavailable"}',
            )
        except (FunctionError, ValueError, TypeError, KeyError) as exc:
            if not isinstance(exc, FunctionError):
                log.error("%s returned an invalid response: %s", route.function, exc)
            status, out_headers, out_body = (
                500,
                [("content-type", "application/json")],
                b'{"message":"Internal Server Error"}',
            )
        if api.cors is not None and origin:
            out_headers = [h for h in out_headers if not h[0].startswith("access-control-")]
            out_headers += self._cors_headers(api.cors, origin)
        out_headers.append(("apigw-requestid", event["requestContext"]["requestId"]))
        log.info(
            "%s %s -> %s %d (%.0f ms)",
            method,
            full_path,
            route.function,
            status,
            (time.monotonic() - started) * 1000,
        )
        await self._respond(send, status, out_headers, out_body)

    def _named(self) -> bool:
        return any(api.stage != "$default" for api in self.stack.http_apis.values())

    def _api_for_preflight(self, path: str) -> HttpApiSpec | None:
        for route in self.stack.routes:
            if route.path and route.match("ANY", path) is not None:
                return self.stack.http_apis[route.api]
        for route in self.stack.routes:
            if route.path and any(
                route.match(m, path) is not None for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
            ):
                return self.stack.http_apis[route.api]
        with_cors = [a for a in self.stack.http_apis.values() if a.cors is not None]
        return with_cors[0] if len(with_cors) == 1 else None

    @staticmethod
    def _cors_headers(cors: dict[str, Any], origin: str) -> list[tuple[str, str]]:
        allowed = [str(o) for o in cors.get("AllowOrigins") or []]
        if not _origin_allowed(origin, allowed):
            return []
        credentials = str(cors.get("AllowCredentials", "")).lower() == "true"
        headers = [
            ("access-control-allow-origin", "*" if "*" in allowed and not credentials else origin)
        ]
        if credentials:
            headers.append(("access-control-allow-credentials", "true"))
        expose = cors.get("ExposeHeaders") or []
        if expose:
            headers.append(("access-control-expose-headers", ",".join(map(str, expose))))
        return headers

    def _preflight_headers(
        self, cors: dict[str, Any], request_headers: dict[str, str]
    ) -> list[tuple[str, str]]:
        origin = request_headers.get("origin", "")
        headers = self._cors_headers(cors, origin)
        if not headers:
            return []
        headers = [h for h in headers if h[0] != "access-control-expose-headers"]
        methods = [str(m).upper() for m in cors.get("AllowMethods") or []]
        wanted_method = request_headers.get("access-control-request-method", "").upper()
        if "*" in methods:
            methods = [wanted_method]
        if wanted_method not in methods:
            return []
        allow_headers = [str(h).lower() for h in cors.get("AllowHeaders") or []]
        wanted = request_headers.get("access-control-request-headers", "")
        if "*" in allow_headers:
            allow_headers = [h.strip() for h in wanted.split(",") if h.strip()]
        headers.append(("access-control-allow-methods", ",".join(methods)))
        if allow_headers:
            headers.append(("access-control-allow-headers", ",".join(allow_headers)))
        if cors.get("MaxAge") is not None:
            headers.append(("access-control-max-age", str(cors["MaxAge"])))
        return headers

    # ------------------------------------------------------------------ admin

    async def _admin(self, scope: Scope, path: str, body: bytes, send: Send) -> None:
        method = scope["method"].upper()
        parts = [p for p in path.split("/") if p][1:]
        try:
            if not parts and method == "GET":
                await self._json(send, 200, self.cloud.describe())
                return
            if parts[:1] == ["schedules"] and len(parts) == 2 and method == "POST":
                results = await asyncio.get_running_loop().run_in_executor(
                    self.cloud.executor, self.cloud.fire_schedule, unquote(parts[1])
                )
                await self._json(send, 200, {"fired": results})
                return
            if parts[:1] == ["invoke"] and len(parts) == 2 and method == "POST":
                event = json.loads(body) if body.strip() else {}
                function = self.stack.function(unquote(parts[1])).logical_id
                try:
                    result = await self._call(function, event)
                except FunctionError as exc:
                    await self._json(
                        send, 200, exc.payload(), [("x-amz-function-error", "Unhandled")]
                    )
                    return
                await self._json(send, 200, result)
                return
            if parts == ["queues"] and method == "GET":
                counts = await asyncio.get_running_loop().run_in_executor(
                    self.cloud.executor, self.cloud.queue_counts
                )
                await self._json(send, 200, counts)
                return
        except KeyError as exc:
            await self._json(send, 404, {"message": str(exc.args[0] if exc.args else exc)})
            return
        except ValueError as exc:
            await self._json(send, 400, {"message": str(exc)})
            return
        await self._json(send, 404, {"message": "Not Found"})

    # ------------------------------------------------------------------ management API

    async def _management(self, method: str, connection_id: str, body: bytes, send: Send) -> None:
        gone = [("x-amzn-errortype", "GoneException")]
        connection = self.connections.get(connection_id)
        if connection is None or not connection.open:
            await self._json(send, 410, {"message": None}, gone)
            return
        if method == "POST":
            if len(body) > MAX_WS_FRAME_BYTES:
                await self._json(
                    send,
                    413,
                    {"message": "Message too long"},
                    [("x-amzn-errortype", "PayloadTooLargeException")],
                )
                return
            try:
                await connection.send_data(body)
            except Exception:  # the socket went away under us
                connection.open = False
                await self._json(send, 410, {"message": None}, gone)
                return
            await self._respond(send, 200, [], b"")
        elif method == "GET":
            await self._json(
                send,
                200,
                {
                    "connectedAt": _iso(connection.connected_at),
                    "identity": {
                        "sourceIp": connection.source_ip,
                        "userAgent": connection.user_agent,
                    },
                    "lastActiveAt": _iso(connection.last_active_at),
                },
            )
        elif method == "DELETE":
            connection.open = False
            with contextlib.suppress(Exception):
                async with connection.lock:
                    await connection.send({"type": "websocket.close", "code": 1000})
            await self._respond(send, 204, [], b"")
        else:
            await self._json(send, 403, {"message": "Forbidden"})

    # ------------------------------------------------------------------ WebSocket

    def _ws_event(
        self,
        conn: Connection,
        route_key: str,
        event_type: str,
        *,
        body: str | None = None,
        is_base64: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        now = time.time()
        context: dict[str, Any] = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": _request_id(),
            "requestTime": _clf_time(now),
            "messageDirection": "IN",
            "stage": conn.api.stage,
            "connectedAt": int(conn.connected_at * 1000),
            "requestTimeEpoch": int(now * 1000),
            "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
            "requestId": _request_id(),
            "domainName": conn.headers.get("host", "127.0.0.1"),
            "connectionId": conn.connection_id,
            "apiId": conn.api.api_id,
        }
        if event_type == "MESSAGE":
            context["messageId"] = _request_id()
        context.update(extra or {})
        event: dict[str, Any] = {"requestContext": context, "isBase64Encoded": is_base64}
        if body is not None:
            event["body"] = body
        return event

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        api = self.ws_paths.get(scope["path"].rstrip("/") or "/")
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if api is None:
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = _headers_dict(scope)
        client = scope.get("client") or ("127.0.0.1", 0)
        conn = Connection(
            connection_id=_connection_id(),
            api=api,
            send=send,
            source_ip=client[0],
            user_agent=headers.get("user-agent", ""),
            headers=headers,
        )
        raw_query = scope.get("query_string", b"").decode("latin-1")
        query = _query_parameters(raw_query)
        multi_query: dict[str, list[str]] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            multi_query.setdefault(key, []).append(value)
        connect_event = self._ws_event(conn, "$connect", "CONNECT")
        connect_event["headers"] = dict(headers)
        connect_event["multiValueHeaders"] = {k: v.split(",") for k, v in headers.items()}
        if query:
            connect_event["queryStringParameters"] = query
            connect_event["multiValueQueryStringParameters"] = multi_query

        subprotocol = None
        route = api.routes.get("$connect")
        if route is not None:
            status, result = 500, None
            try:
                result = await self._call(route.function, connect_event)
                status = int(result.get("statusCode", 200)) if isinstance(result, dict) else 200
            except (FunctionError, ValueError, TypeError) as exc:
                log.warning("$connect failed: %s", exc)
            if not 200 <= status < 300:
                log.info("WS %s $connect -> %d (refused)", api.logical_id, status)
                await self._refuse(scope, send, status, result)
                return
            result_headers = (result or {}).get("headers") or {} if isinstance(result, dict) else {}
            for name, value in result_headers.items():
                if name.lower() == "sec-websocket-protocol":
                    subprotocol = str(value)
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if subprotocol:
            accept["subprotocol"] = subprotocol
        await send(accept)
        self.connections[conn.connection_id] = conn
        log.info("WS %s connected %s", api.logical_id, conn.connection_id)

        tasks: set[asyncio.Task[None]] = set()
        close_code = 1005
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    close_code = int(message.get("code") or 1005)
                    break
                if message["type"] != "websocket.receive":
                    continue
                conn.last_active_at = time.time()
                if message.get("text") is not None:
                    body, is_b64 = message["text"], False
                else:
                    body, is_b64 = base64.b64encode(message.get("bytes") or b"").decode(), True
                task = asyncio.create_task(self._ws_message(conn, body, is_b64))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            conn.open = False
            self.connections.pop(conn.connection_id, None)
            log.info("WS %s disconnected %s (%d)", api.logical_id, conn.connection_id, close_code)
            route = api.routes.get("$disconnect")
            if route is not None:
                event = self._ws_event(
                    conn,
                    "$disconnect",
                    "DISCONNECT",
                    extra={
                        "disconnectStatusCode": close_code,
                        "disconnectReason": f"Client-side close frame status code '{close_code}'",
                    },
                )
                event["headers"] = dict(headers)
                with contextlib.suppress(Exception):
                    await self._call(route.function, event)

    async def _refuse(self, scope: Scope, send: Send, status: int, result: Any) -> None:
        if "websocket.http.response" in (scope.get("extensions") or {}):
            body = b""
            if isinstance(result, dict) and isinstance(result.get("body"), str):
                body = result["body"].encode()
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": status if status >= 400 else 403,
                    "headers": [(b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})

    async def _ws_message(self, conn: Connection, body: str, is_b64: bool) -> None:
        api = conn.api
        selected = None if is_b64 else _select_route(api.route_selection_expression, body)
        route = api.routes.get(selected) if selected else None
        route = route or api.routes.get("$default")
        if route is None:
            with contextlib.suppress(Exception):
                await conn.send_data(
                    json.dumps(
                        {
                            "message": "Forbidden",
                            "connectionId": conn.connection_id,
                            "requestId": _request_id(),
                        }
                    ).encode()
                )
            return
        event = self._ws_event(conn, route.route_key, "MESSAGE", body=body, is_base64=is_b64)
        try:
            result = await self._call(route.function, event)
        except FunctionError:
            with contextlib.suppress(Exception):
                await conn.send_data(
                    json.dumps(
                        {
                            "message": "Internal server error",
                            "connectionId": conn.connection_id,
                            "requestId": event["requestContext"]["requestId"],
                        }
                    ).encode()
                )
            return
        if route.two_way and isinstance(result, dict) and result.get("body") is not None:
            with contextlib.suppress(Exception):
                await conn.send_data(str(result["body"]).encode())
