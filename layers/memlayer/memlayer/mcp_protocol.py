"""MCP's streamable HTTP transport as this server speaks it: stateless, one JSON-RPC request per
POST answered with one JSON response, no SSE, no session. Both protocol eras: the `initialize`
handshake (2024-11-05 … 2025-11-25) and the per-request envelope of 2026-07-28 (`server/discover`,
`params._meta` carrying the version, routing headers checked against the body).

Written here rather than served by the official SDK (PyPI `mcp`) because the SDK cannot meet
the function's cold-start budget of 1.25x the bare FastAPI app: importing its server costs
≈1.2x that app's whole init by itself, most of it building the pydantic models of three
protocol revisions (`python -m bench.coldstart`: `mcp_sdk_import` against `mcp`). The wire
behaviour is the SDK's server's (codes, messages, HTTP statuses; tests/unit/test_mcp_protocol.py
compares the two) and the SDK's own client drives it in both eras (tests/integration/test_mcp.py).

Pure: bytes and headers in, a status and bytes out; what the tools do is the `Tools` given."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS = ("2026-07-28",)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022
# 2026-07-28 answers a JSON-RPC error with an HTTP status too (the handshake era always 200).
MODERN_ERROR_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}

VERSION_HEADER = "mcp-protocol-version"
METHOD_HEADER = "mcp-method"
NAME_HEADER = "mcp-name"
PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
CAPABILITIES = {"tools": {"listChanged": False}}
# Cacheable 2026 results say how long a client may keep them: not at all, and only its own.
NOT_CACHED = {"ttlMs": 0, "cacheScope": "private"}
_BASE64_HEADER = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")


class McpError(Exception):
    """A JSON-RPC error answer (`code`, `message`, optional `data`)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def body(self) -> dict[str, Any]:
        error = {"code": self.code, "message": self.message}
        return error if self.data is None else {**error, "data": self.data}


class Tools(Protocol):
    """What the server offers one caller."""

    def list(self) -> list[dict[str, Any]]:
        """The `tools/list` entries, in wire form."""
        ...

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The `tools/call` result in wire form; raises McpError for an unknown tool."""
        ...


@dataclass(frozen=True)
class Server:
    """Who answers: the `serverInfo` and `instructions` of `initialize` and `server/discover`."""

    name: str
    title: str
    version: str
    description: str
    instructions: str

    @property
    def info(self) -> dict[str, str]:
        return {
            "name": self.name,
            "title": self.title,
            "version": self.version,
            "description": self.description,
        }


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status and JSON body (None: no body, as for 202)."""

    status: int
    body: bytes | None = None


def _json(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def _error(status: int, request_id: Any, error: McpError) -> Answer:
    return Answer(status, _json({"jsonrpc": "2.0", "id": request_id, "error": error.body()}))


def accepts_json(accept: str) -> bool:
    types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(types & {"application/json", "application/*", "*/*"})


def _is_request_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _decode_header(value: str | None) -> str | None:
    """A routing header's value: verbatim, or the UTF-8 inside the `=?base64?…?=` wrapper that
    clients put around values an HTTP header cannot carry (None when that is malformed)."""
    match = _BASE64_HEADER.fullmatch(value or "")
    if match is None:
        return value
    try:
        return base64.b64decode(match["payload"], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


async def answer(
    server: Server,
    tools: Tools,
    headers: Iterable[tuple[str, str]],
    body: bytes,
) -> Answer:
    """Answers one POST to the MCP endpoint (`headers`: the raw pairs, repeats kept)."""
    pairs = [(name.lower(), value) for name, value in headers]
    folded = dict(pairs)
    if not accepts_json(folded.get("accept", "")):
        refusal = McpError(INVALID_REQUEST, "Not Acceptable: Client must accept application/json")
        return _error(406, None, refusal)
    if folded.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        refusal = McpError(INVALID_REQUEST, "Unsupported Media Type: use application/json")
        return _error(415, None, refusal)
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):  # oversized integers raise ValueError, nesting Recursion
        return _error(400, None, McpError(PARSE_ERROR, "Parse error"))
    version = folded.get(VERSION_HEADER)
    if version is not None and version not in HANDSHAKE_VERSIONS:
        return await _modern(server, tools, pairs, folded, message)
    # No header (the spec then assumes 2025-03-26) or a handshake version: the answers' shapes
    # are the same for all of them.
    return await _handshake_era(server, tools, message)


# ------------------------------------------------------------------ 2024-11-05 … 2025-11-25


async def _handshake_era(server: Server, tools: Tools, message: Any) -> Answer:
    """Stateless: every request is served as if the handshake had happened (any instance
    answers any request); `initialize` negotiates the version the client then sends."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return _error(400, None, McpError(INVALID_REQUEST, "Invalid JSON-RPC message"))
    params = message.get("params")
    if "method" not in message:
        # A response or error to a server request: this server sends none, so it is dropped.
        is_reply = "id" in message and ("result" in message or "error" in message)
        if is_reply:
            return Answer(202)
        return _error(400, None, McpError(INVALID_REQUEST, "Invalid JSON-RPC message"))
    method = message["method"]
    if not isinstance(method, str) or not (params is None or isinstance(params, dict)):
        return _error(400, None, McpError(INVALID_REQUEST, "Invalid JSON-RPC message"))
    if "id" not in message:
        return Answer(202)  # notifications (initialized, cancelled...) need nothing here
    request_id = message["id"]
    if not _is_request_id(request_id):
        return _error(400, None, McpError(INVALID_REQUEST, "Invalid JSON-RPC message"))
    try:
        result = await _handshake_method(server, tools, method, params or {})
    except McpError as exc:
        return _error(200, request_id, exc)
    return Answer(200, _json({"jsonrpc": "2.0", "id": request_id, "result": result}))


def _invalid_params() -> McpError:
    return McpError(INVALID_PARAMS, "Invalid request parameters", "")


async def _handshake_method(
    server: Server, tools: Tools, method: str, params: dict[str, Any]
) -> dict[str, Any]:
    if method == "initialize":
        requested = params.get("protocolVersion")
        client = params.get("clientInfo")
        well_formed = (
            isinstance(requested, str)
            and isinstance(params.get("capabilities"), dict)
            and isinstance(client, dict)
            and isinstance(client.get("name"), str)
            and isinstance(client.get("version"), str)
        )
        if not well_formed:
            raise _invalid_params()
        return {
            "protocolVersion": requested
            if requested in HANDSHAKE_VERSIONS
            else HANDSHAKE_VERSIONS[-1],
            "capabilities": CAPABILITIES,
            "serverInfo": server.info,
            "instructions": server.instructions,
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": tools.list()}
    if method == "tools/call":
        return await _call(tools, params)
    raise McpError(METHOD_NOT_FOUND, "Method not found", method)


async def _call(tools: Tools, params: dict[str, Any]) -> dict[str, Any]:
    name, arguments = params.get("name"), params.get("arguments")
    if not isinstance(name, str) or not (arguments is None or isinstance(arguments, dict)):
        raise _invalid_params()
    return await tools.call(name, arguments or {})


# ------------------------------------------------------------------ 2026-07-28


async def _modern(
    server: Server,
    tools: Tools,
    pairs: list[tuple[str, str]],
    headers: dict[str, str],
    message: Any,
) -> Answer:
    """One self-contained request: its `_meta` envelope names the version and the client's
    capabilities, and the routing headers must say the same as the body."""
    if isinstance(message, dict) and "id" not in message:
        # A notification: nothing in this protocol needs one over HTTP; acknowledged.
        if message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"), str):
            return _error(400, None, _not_one_message())
        unsupported = _unsupported(headers.get(VERSION_HEADER, ""))
        return Answer(202) if unsupported is None else _error(400, None, unsupported)
    if (
        not isinstance(message, dict)
        or message.get("jsonrpc") != "2.0"
        or not isinstance(message.get("method"), str)
        or not _is_request_id(message.get("id"))
        or not (message.get("params") is None or isinstance(message["params"], dict))
    ):
        return _error(400, None, _not_one_message())
    request_id, method, params = message["id"], message["method"], message.get("params") or {}
    try:
        _check_envelope(pairs, headers, method, params)
        result = await _modern_method(server, tools, method, params)
    except McpError as exc:
        return _error(MODERN_ERROR_STATUS.get(exc.code, 200), request_id, exc)
    result = {**result, "resultType": "complete", "_meta": {SERVER_INFO_KEY: server.info}}
    return Answer(200, _json({"jsonrpc": "2.0", "id": request_id, "result": result}))


def _not_one_message() -> McpError:
    return McpError(
        INVALID_REQUEST, "Body must be a single JSON-RPC request or notification object"
    )


def _unsupported(requested: Any) -> McpError | None:
    if requested in MODERN_VERSIONS:
        return None
    data = {"supported": list(MODERN_VERSIONS), "requested": requested}
    return McpError(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version", data)


def _check_envelope(
    pairs: list[tuple[str, str]], headers: dict[str, str], method: str, params: dict[str, Any]
) -> None:
    """The spec's ladder, first failure wins: the envelope is there, the headers agree with
    the body (each given once), the version is one this server speaks."""
    meta = params.get("_meta")
    if not isinstance(meta, Mapping):
        raise McpError(
            INVALID_PARAMS,
            f"params._meta must be an object carrying the required {PROTOCOL_VERSION_KEY!r} "
            f"and {CLIENT_CAPABILITIES_KEY!r} envelope keys",
        )
    missing = [key for key in (PROTOCOL_VERSION_KEY, CLIENT_CAPABILITIES_KEY) if key not in meta]
    if missing:
        raise McpError(
            INVALID_PARAMS,
            f"params._meta is missing the required envelope key(s): {', '.join(missing)}",
        )
    routing = [name for name, _ in pairs if name in (VERSION_HEADER, METHOD_HEADER, NAME_HEADER)]
    if repeated := next((name for name in routing if routing.count(name) > 1), None):
        raise McpError(HEADER_MISMATCH, f"{repeated} header appears more than once")
    version = meta[PROTOCOL_VERSION_KEY]
    if headers.get(VERSION_HEADER) != version:
        raise McpError(
            HEADER_MISMATCH,
            f"{VERSION_HEADER} header does not match the request envelope's protocol version",
        )
    if headers.get(METHOD_HEADER) != method:
        raise McpError(
            HEADER_MISMATCH, f"{METHOD_HEADER} header does not match the request body's method"
        )
    name = params.get("name") if method == "tools/call" else None
    if name is not None and _decode_header(headers.get(NAME_HEADER)) != name:
        raise McpError(
            HEADER_MISMATCH,
            f"{NAME_HEADER} header does not match the request body's 'name' parameter",
        )
    if (unsupported := _unsupported(version)) is not None:
        raise unsupported


async def _modern_method(
    server: Server, tools: Tools, method: str, params: dict[str, Any]
) -> dict[str, Any]:
    if method == "server/discover":
        return {
            "supportedVersions": list(MODERN_VERSIONS),
            "capabilities": CAPABILITIES,
            "instructions": server.instructions,
            **NOT_CACHED,
        }
    if method == "tools/list":
        return {"tools": tools.list(), **NOT_CACHED}
    if method == "tools/call":
        return await _call(tools, params)
    # `initialize` and `ping` do not exist at this version.
    raise McpError(METHOD_NOT_FOUND, "Method not found", method)
