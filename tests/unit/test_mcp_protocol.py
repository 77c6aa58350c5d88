"""memlayer.mcp_protocol on the wire, both protocol eras: what a client may send and what it gets
back (status, JSON-RPC result or error), and the same requests answered by the official SDK's
own server (a dev dependency) for comparison: the same status and body, except where the SDK's
answer to a malformed request is not JSON-RPC's (checked on their own above). The tools behind
both are a small in-test `Tools`; the real ones, over HTTP with the SDK's own client, are
tests/integration/test_mcp.py's."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from memlayer import mcp_protocol
from memlayer.mcp_protocol import McpError

SERVER = mcp_protocol.Server(
    name="memlayer", title="memlayer", version="1.0.0", description="memory", instructions="use it"
)
MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


class EchoTools:
    """One tool, `echo`, answering its arguments as structured content."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def list(self) -> list[dict[str, Any]]:
        return [{"name": "echo", "inputSchema": {"type": "object"}}]

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, arguments))
        if name != "echo":
            raise McpError(mcp_protocol.INVALID_PARAMS, f"Unknown tool: {name}")
        return {"content": [], "structuredContent": arguments, "isError": False}


def post(
    message: Any, headers: dict[str, str] | None = None, *, raw: bytes | None = None
) -> tuple[int, Any]:
    pairs = list({**HEADERS, **(headers or {})}.items())
    return post_pairs(message, pairs, raw=raw)


def post_pairs(
    message: Any, pairs: list[tuple[str, str]], *, raw: bytes | None = None
) -> tuple[int, Any]:
    body = raw if raw is not None else json.dumps(message).encode()
    answer = asyncio.run(mcp_protocol.answer(SERVER, EchoTools(), pairs, body))
    return answer.status, None if answer.body is None else json.loads(answer.body)


def request(method: str, params: dict[str, Any] | None = None, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    return message if params is None else {**message, "params": params}


def modern(method: str, params: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"mcp-protocol-version": MODERN, "mcp-method": method}
    if method == "tools/call" and params:
        headers["mcp-name"] = params["name"]
    return post(request(method, {**(params or {}), "_meta": META}), headers)


def initialize(version: Any) -> dict[str, Any]:
    client = {"name": "test", "version": "1"}
    return request(
        "initialize", {"protocolVersion": version, "capabilities": {}, "clientInfo": client}
    )


# ------------------------------------------------------------------ the handshake era


@pytest.mark.parametrize(
    ("offered", "negotiated"),
    [
        ("2024-11-05", "2024-11-05"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("1999-01-01", "2025-11-25"),  # unknown: the server's latest, the client decides
        (MODERN, "2025-11-25"),  # the per-request era has no handshake
    ],
)
def test_initialize_negotiates_the_version(offered: str, negotiated: str) -> None:
    status, body = post(initialize(offered))
    assert status == 200
    assert body["result"] == {
        "protocolVersion": negotiated,
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": SERVER.info,
        "instructions": "use it",
    }


def test_initialize_without_client_info_is_invalid_params() -> None:
    status, body = post(request("initialize", {"protocolVersion": "2025-11-25"}))
    assert status == 200 and body["error"]["code"] == mcp_protocol.INVALID_PARAMS


def test_requests_are_served_without_a_handshake_any_instance_answers() -> None:
    version = {"mcp-protocol-version": "2025-11-25"}
    assert post(request("ping", id="a"), version) == (
        200,
        {"jsonrpc": "2.0", "id": "a", "result": {}},
    )
    status, body = post(request("tools/list"))  # no version header: the spec assumes 2025-03-26
    assert body["result"] == {"tools": EchoTools().list()}
    status, body = post(request("tools/call", {"name": "echo", "arguments": {"x": 1}}), version)
    assert status == 200 and body["result"]["structuredContent"] == {"x": 1}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"name": "rm_rf"}, "Unknown tool: rm_rf"),
        ({}, "Invalid request parameters"),
        ({"name": "echo", "arguments": [1]}, "Invalid request parameters"),
    ],
)
def test_a_bad_tool_call_is_invalid_params(params: dict[str, Any], message: str) -> None:
    status, body = post(request("tools/call", params))
    assert status == 200
    assert body["error"]["code"] == mcp_protocol.INVALID_PARAMS
    assert body["error"]["message"] == message


def test_an_unknown_method_is_method_not_found_naming_it() -> None:
    status, body = post(request("resources/list"))
    assert status == 200
    assert body["error"] == {
        "code": -32601,
        "message": "Method not found",
        "data": "resources/list",
    }


def test_notifications_and_replies_are_acknowledged_without_a_body() -> None:
    assert post({"jsonrpc": "2.0", "method": "notifications/initialized"}) == (202, None)
    assert post({"jsonrpc": "2.0", "id": 7, "result": {}}) == (202, None)


@pytest.mark.parametrize(
    "message",
    [
        [request("ping")],  # batches are gone since 2025-06-18
        {"id": 1, "method": "ping"},
        request("ping", id=None),
        request("ping", id=1.5),
        request("ping", id=True),
        {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]},
        {"jsonrpc": "2.0", "id": 1},
    ],
)
def test_what_is_not_one_json_rpc_message_is_an_invalid_request(message: Any) -> None:
    status, body = post(message)
    assert status == 400
    assert body["id"] is None and body["error"]["code"] == mcp_protocol.INVALID_REQUEST


def test_transport_refusals() -> None:
    status, body = post(None, raw=b"{nope")
    assert status == 400 and body["error"] == {"code": -32700, "message": "Parse error"}
    assert post(request("ping"), {"accept": "text/html"})[0] == 406
    assert post(request("ping"), {"accept": "*/*"})[0] == 200
    assert post(request("ping"), {"accept": "application/json"})[0] == 200
    assert post(request("ping"), {"content-type": "text/plain"})[0] == 415
    assert post(request("ping"), {"content-type": "application/json; charset=utf-8"})[0] == 200


# ------------------------------------------------------------------ 2026-07-28


def test_discover_names_the_version_capabilities_and_instructions() -> None:
    status, body = modern("server/discover")
    assert status == 200
    assert body["result"] == {
        "supportedVersions": [MODERN],
        "capabilities": {"tools": {"listChanged": False}},
        "instructions": "use it",
        "ttlMs": 0,
        "cacheScope": "private",
        "resultType": "complete",
        "_meta": {"io.modelcontextprotocol/serverInfo": SERVER.info},
    }


def test_every_modern_result_is_complete_and_stamped_with_the_server() -> None:
    status, body = modern("tools/call", {"name": "echo", "arguments": {"q": "x"}})
    assert status == 200
    result = body["result"]
    assert result["structuredContent"] == {"q": "x"} and result["resultType"] == "complete"
    assert result["_meta"] == {"io.modelcontextprotocol/serverInfo": SERVER.info}
    assert modern("tools/list")[1]["result"]["tools"] == EchoTools().list()


@pytest.mark.parametrize("method", ["initialize", "ping", "foo/bar"])
def test_methods_this_version_lacks_are_404(method: str) -> None:
    status, body = modern(method)
    assert status == 404 and body["error"]["code"] == mcp_protocol.METHOD_NOT_FOUND


def test_modern_errors_carry_their_http_status() -> None:
    status, body = modern("tools/call", {"name": "nope"})
    assert status == 400 and body["error"]["message"] == "Unknown tool: nope"


def test_the_envelope_is_required() -> None:
    headers = {"mcp-protocol-version": MODERN, "mcp-method": "tools/list"}
    status, body = post(request("tools/list"), headers)
    assert status == 400 and body["error"]["code"] == mcp_protocol.INVALID_PARAMS
    partial = {"io.modelcontextprotocol/protocolVersion": MODERN}
    status, body = post(request("tools/list", {"_meta": partial}), headers)
    assert status == 400
    assert body["error"]["message"] == (
        "params._meta is missing the required envelope key(s): "
        "io.modelcontextprotocol/clientCapabilities"
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"mcp-method": "tools/list"},  # what the body says is tools/call
        {"mcp-method": "tools/call", "mcp-name": "other"},
        {"mcp-method": "tools/call"},  # no Mcp-Name
        {"mcp-method": "tools/call", "mcp-name": "echo", "mcp-protocol-version": "2030-01-01"},
    ],
)
def test_routing_headers_must_match_the_body(headers: dict[str, str]) -> None:
    message = request("tools/call", {"name": "echo", "_meta": META})
    status, body = post(message, {"mcp-protocol-version": MODERN, **headers})
    assert status == 400 and body["error"]["code"] == mcp_protocol.HEADER_MISMATCH


def test_a_routing_header_given_twice_is_refused() -> None:
    pairs = [*HEADERS.items(), ("mcp-protocol-version", MODERN), ("mcp-method", "tools/list")]
    status, body = post_pairs(request("tools/list", {"_meta": META}), [*pairs, pairs[-1]])
    assert status == 400
    assert body["error"]["message"] == "mcp-method header appears more than once"


def test_a_name_header_may_come_base64_wrapped() -> None:
    wrapped = f"=?base64?{base64.b64encode(b'echo').decode()}?="
    headers = {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": wrapped}
    status, _ = post(request("tools/call", {"name": "echo", "_meta": META}), headers)
    assert status == 200


def test_an_unsupported_version_names_the_supported_ones() -> None:
    meta = {**META, "io.modelcontextprotocol/protocolVersion": "2030-01-01"}
    headers = {"mcp-protocol-version": "2030-01-01", "mcp-method": "tools/list"}
    status, body = post(request("tools/list", {"_meta": meta}), headers)
    assert status == 400
    assert body["error"] == {
        "code": mcp_protocol.UNSUPPORTED_PROTOCOL_VERSION,
        "message": "Unsupported protocol version",
        "data": {"supported": [MODERN], "requested": "2030-01-01"},
    }


def test_modern_notifications_are_acknowledged_at_a_served_version_only() -> None:
    notification = {"jsonrpc": "2.0", "method": "notifications/cancelled"}
    assert post(notification, {"mcp-protocol-version": MODERN}) == (202, None)
    status, body = post(notification, {"mcp-protocol-version": "2030-01-01"})
    assert status == 400 and body["error"]["code"] == mcp_protocol.UNSUPPORTED_PROTOCOL_VERSION


def test_a_modern_body_must_be_one_request() -> None:
    status, body = post([], {"mcp-protocol-version": MODERN})
    assert status == 400 and body["error"]["code"] == mcp_protocol.INVALID_REQUEST


# ------------------------------------------------------------------ against the SDK's own server

MODERN_HEADERS = {"mcp-protocol-version": MODERN}
HANDSHAKE_HEADERS = {"mcp-protocol-version": "2025-11-25"}


def _modern_case(method: str, params: dict[str, Any] | None = None, **headers: str) -> Any:
    routing = {**MODERN_HEADERS, "mcp-method": method, **headers}
    return request(method, {**(params or {}), "_meta": META}), routing


SAME_AS_SDK: dict[str, tuple[Any, dict[str, str]]] = {
    "initialize 2025-11-25": (initialize("2025-11-25"), {}),
    "initialize 2024-11-05": (initialize("2024-11-05"), {}),
    "initialize unknown": (initialize("1999-01-01"), {}),
    "initialize bad params": (request("initialize", {}), {}),
    "ping": (request("ping", id="p"), HANDSHAKE_HEADERS),
    "notification": ({"jsonrpc": "2.0", "method": "notifications/initialized"}, {}),
    "posted reply": ({"jsonrpc": "2.0", "id": 1, "result": {}}, HANDSHAKE_HEADERS),
    "tools/list": (request("tools/list"), HANDSHAKE_HEADERS),
    "tools/call": (request("tools/call", {"name": "echo", "arguments": {"a": 1}}), {}),
    "unknown tool": (request("tools/call", {"name": "nope"}), HANDSHAKE_HEADERS),
    "call without name": (request("tools/call", {}), HANDSHAKE_HEADERS),
    "unknown method": (request("prompts/list"), HANDSHAKE_HEADERS),
    "not acceptable": (request("ping"), {"accept": "text/html"}),
    "2026 discover": _modern_case("server/discover"),
    "2026 tools/list": _modern_case("tools/list"),
    "2026 tools/call": _modern_case(
        "tools/call", {"name": "echo", "arguments": {"a": 1}}, **{"mcp-name": "echo"}
    ),
    "2026 unknown tool": _modern_case("tools/call", {"name": "zz"}, **{"mcp-name": "zz"}),
    "2026 ping": _modern_case("ping"),
    "2026 initialize": _modern_case("initialize"),
    "2026 no envelope": (request("tools/list"), {**MODERN_HEADERS, "mcp-method": "tools/list"}),
    "2026 method mismatch": _modern_case("tools/list", **{"mcp-method": "tools/call"}),
    "2026 name mismatch": _modern_case("tools/call", {"name": "echo"}, **{"mcp-name": "x"}),
    "2026 unsupported": (
        request(
            "tools/list",
            {"_meta": {**META, "io.modelcontextprotocol/protocolVersion": "2030-01-01"}},
        ),
        {"mcp-protocol-version": "2030-01-01", "mcp-method": "tools/list"},
    ),
    "2026 notification": ({"jsonrpc": "2.0", "method": "notifications/cancelled"}, MODERN_HEADERS),
    "2026 batch": ([], MODERN_HEADERS),
}


def _sdk_post(message: Any, headers: dict[str, str]) -> tuple[int, Any]:
    """The same POST answered by the official SDK's server (stateless, JSON responses)."""
    import mcp_types as types
    from mcp.server.lowlevel import Server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.shared.exceptions import MCPError

    tools = EchoTools()

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult.model_validate({"tools": tools.list()})

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            result = await tools.call(params.name, params.arguments or {})
        except McpError as exc:
            raise MCPError(exc.code, exc.message, exc.data) from None
        return types.CallToolResult.model_validate(result)

    sdk_server: Server[Any] = Server(
        SERVER.name,
        version=SERVER.version,
        title=SERVER.title,
        description=SERVER.description,
        instructions=SERVER.instructions,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
    pairs = {**HEADERS, **headers}
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "http_version": "1.1",
        "server": ("test", 80),
        "client": ("127.0.0.1", 1),
        "headers": [(k.encode(), v.encode()) for k, v in pairs.items()],
    }
    body = json.dumps(message).encode()
    delivered: list[bool] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if delivered:
            await asyncio.Future()  # no disconnect while the answer is being written
        delivered.append(True)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def exchange() -> None:
        manager = StreamableHTTPSessionManager(app=sdk_server, json_response=True, stateless=True)
        async with manager.run():
            await manager.handle_request(scope, receive, send)

    asyncio.run(exchange())
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    raw = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(raw) if raw else None


@pytest.mark.parametrize("case", sorted(SAME_AS_SDK))
def test_answers_as_the_sdks_own_server(case: str) -> None:
    message, headers = SAME_AS_SDK[case]
    assert post(message, headers) == _sdk_post(message, headers)
