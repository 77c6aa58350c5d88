"""The MCP server at /mcp, driven by the official MCP SDK's own client over HTTP against the
local cloud: the initialize handshake (and the 2026-07-28 per-request envelope), tools/list,
tools/call of every tool; API-key auth, read-only keys, isolation between users, tool errors
carrying the request id."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import httpx2
import mcp_types as types
from mcp.client.client import Client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import LATEST_HANDSHAKE_VERSION, LATEST_MODERN_VERSION

from tests.conftest import User

T = TypeVar("T")
ALL_TOOLS = {
    "save_memory",
    "search_memories",
    "get_context",
    "get_memory",
    "list_recent",
    "delete_memory",
}
JSONRPC_HEADERS = {"accept": "application/json, text/event-stream"}


def run(step: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(step())  # type: ignore[arg-type]


@asynccontextmanager
async def session(cloud: Any, token: str) -> AsyncIterator[ClientSession]:
    """An initialized SDK client session over streamable HTTP with this bearer token."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with (
        http,
        streamable_http_client(f"{cloud.base_url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        yield client


def create_key(user: User, scopes: list[str]) -> str:
    resp = user.http.post("/v1/api-keys", json={"name": "assistant", "scopes": scopes})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def tool_error(result: types.CallToolResult) -> dict[str, Any]:
    assert result.is_error
    [block] = result.content
    assert isinstance(block, types.TextContent)
    return dict(json.loads(block.text))


def save(cloud: Any, token: str, content: str, **extra: Any) -> str:
    async def step() -> str:
        async with session(cloud, token) as client:
            saved = await client.call_tool("save_memory", {"content": content, **extra})
        assert not saved.is_error, saved.content
        return str(saved.structured_content["id"])

    return run(step)


def test_an_assistant_saves_then_finds_the_memory_through_search_and_context(
    cloud: Any, user: User
) -> None:
    async def connect_and_save() -> tuple[types.InitializeResult, types.ListToolsResult, str]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {user.token}"}, timeout=30)
        async with (
            http,
            streamable_http_client(f"{cloud.base_url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as client,
        ):
            init = await client.initialize()
            listed = await client.list_tools()
            saved = await client.call_tool(
                "save_memory",
                {
                    "content": "The staging database listens on port 6543 behind the bastion",
                    "tags": ["infra"],
                    "source_url": "https://wiki.example.com/staging",
                },
            )
        assert not saved.is_error, saved.content
        return init, listed, str(saved.structured_content["id"])

    init, listed, memory_id = run(connect_and_save)
    assert init.protocol_version == LATEST_HANDSHAKE_VERSION
    assert init.server_info.name == "memlayer"
    assert init.instructions and "save_memory" in init.instructions
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == ALL_TOOLS
    search_schema = tools["search_memories"].input_schema
    assert search_schema["required"] == ["query"]
    assert set(search_schema["properties"]) == {"query", "limit", "mode", "filters", "expand"}
    assert "$ref" not in json.dumps(search_schema)  # definitions are inlined
    assert all(tool.description and tool.output_schema for tool in listed.tools)
    assert tools["search_memories"].annotations.read_only_hint  # type: ignore[union-attr]
    assert tools["delete_memory"].annotations.destructive_hint  # type: ignore[union-attr]

    cloud.drain(timeout=30)  # enrichment (title, tags, embeddings) runs through SQS

    async def recall() -> list[types.CallToolResult]:
        async with session(cloud, user.token) as client:
            return [
                await client.call_tool("search_memories", {"query": "staging database port"}),
                await client.call_tool(
                    "get_context", {"query": "which port does the staging database use?"}
                ),
                await client.call_tool("get_memory", {"id": memory_id}),
                await client.call_tool("list_recent", {"limit": 5}),
            ]

    search, context, memory, recent = run(recall)
    [hit] = search.structured_content["results"]
    assert hit["id"] == memory_id and hit["status"] == "ready" and hit["title"]
    assert "port 6543" in hit["snippet"] and 0 < hit["score"] <= 1
    assert "infra" in hit["tags"] and hit["source_url"] == "https://wiki.example.com/staging"
    assert json.loads(search.content[0].text) == search.structured_content  # type: ignore[union-attr]
    assert context.structured_content["memories"] == [memory_id]
    assert "port 6543" in context.content[0].text  # type: ignore[union-attr]
    assert memory.structured_content["content"].startswith("The staging database")
    assert memory.structured_content["analysis"]["title"] == hit["title"]
    assert [m["id"] for m in recent.structured_content["memories"]] == [memory_id]
    # The REST API sees the very same memory.
    assert user.http.get(f"/v1/memories/{memory_id}").json()["tags"][0] == "infra"


def test_the_2026_per_request_envelope_is_served_too(cloud: Any, user: User) -> None:
    memory_id = save(cloud, user.token, "Lisbon flight departs Thursday from terminal 2")

    async def step() -> tuple[str | None, types.CallToolResult]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {user.token}"}, timeout=30)
        transport = streamable_http_client(f"{cloud.base_url}/mcp", http_client=http)
        async with http, Client(transport, mode="auto") as client:
            found = await client.call_tool(
                "search_memories", {"query": "Lisbon flight", "mode": "keyword"}
            )
            return client.protocol_version, found

    version, found = run(step)
    assert version == LATEST_MODERN_VERSION
    assert [r["id"] for r in found.structured_content["results"]] == [memory_id]


def test_another_users_key_never_sees_the_memory(cloud: Any, user: User, other_user: User) -> None:
    memory_id = save(cloud, user.token, "Grandma's apple pie: butter, flour, six apples")
    cloud.drain(timeout=30)
    intruder = create_key(other_user, ["read", "write"])

    async def step() -> list[types.CallToolResult]:
        async with session(cloud, intruder) as client:
            return [
                await client.call_tool("search_memories", {"query": "apple pie"}),
                await client.call_tool("get_context", {"query": "apple pie recipe"}),
                await client.call_tool("list_recent", {}),
                await client.call_tool("get_memory", {"id": memory_id}),
                await client.call_tool("delete_memory", {"id": memory_id}),
            ]

    search, context, recent, read, delete = run(step)
    assert search.structured_content == {"results": []}
    assert context.structured_content["memories"] == []
    assert recent.structured_content["memories"] == []
    for result in (read, delete):  # 404, never 403: nothing tells the memory exists
        error = tool_error(result)
        assert error["error"] == "not_found" and error["request_id"]
    assert user.http.get(f"/v1/memories/{memory_id}").status_code == 200


def test_a_read_only_key_gets_only_the_read_tools(cloud: Any, user: User) -> None:
    memory_id = save(cloud, user.token, "Kubernetes pods restart after three failed probes")
    read_only = create_key(user, ["read"])

    async def step() -> tuple[set[str], list[types.CallToolResult]]:
        async with session(cloud, read_only) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            return names, [
                await client.call_tool("save_memory", {"content": "sneaky"}),
                await client.call_tool("delete_memory", {"id": memory_id}),
                await client.call_tool("get_memory", {"id": memory_id}),
            ]

    names, (saved, deleted, read) = run(step)
    assert names == ALL_TOOLS - {"save_memory", "delete_memory"}
    for result in (saved, deleted):
        error = tool_error(result)
        assert error["error"] == "forbidden" and error["detail"] == "this API key is read-only"
        assert error["request_id"]
    assert not read.is_error and read.structured_content["id"] == memory_id
    listed = user.http.get("/v1/memories").json()["items"]
    assert [m["id"] for m in listed] == [memory_id]


def test_bad_arguments_and_failures_are_tool_errors_with_the_request_id(
    cloud: Any, user: User
) -> None:
    async def step() -> list[types.CallToolResult]:
        async with session(cloud, user.token) as client:
            return [
                await client.call_tool("save_memory", {"content": "   "}),
                await client.call_tool("search_memories", {"query": "x", "limit": 1000}),
                await client.call_tool("get_memory", {"id": "01NOSUCHMEMORY"}),
            ]

    blank, too_many, missing = run(step)
    error = tool_error(blank)
    assert error["error"] == "validation_error" and error["detail"][0]["loc"] == ["content"]
    assert tool_error(too_many)["detail"][0]["loc"] == ["limit"]
    assert tool_error(missing)["error"] == "not_found"
    assert len({tool_error(r)["request_id"] for r in (blank, too_many, missing)}) == 3


def test_http_level_auth_and_methods(cloud: Any, user: User) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "curl", "version": "1"},
        },
    }
    anonymous = httpx.post(f"{cloud.base_url}/mcp", json=initialize, headers=JSONRPC_HEADERS)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["request_id"] == anonymous.headers["x-request-id"]
    # Plain JSON-RPC works as the README shows; an older client gets its own version.
    answered = user.http.post("/mcp", json=initialize, headers=JSONRPC_HEADERS)
    assert answered.status_code == 200 and answered.headers["content-type"] == "application/json"
    assert answered.json()["result"]["protocolVersion"] == "2025-06-18"
    unknown = user.http.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "rm_rf"}},
        headers={**JSONRPC_HEADERS, "mcp-protocol-version": "2025-06-18"},
    )
    assert unknown.json()["error"]["message"] == "Unknown tool: rm_rf"
    acknowledged = user.http.post(
        "/mcp",
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers={**JSONRPC_HEADERS, "mcp-protocol-version": "2025-06-18"},
    )
    assert acknowledged.status_code == 202 and acknowledged.content == b""
    not_json = user.http.post("/mcp", content=b"{", headers=JSONRPC_HEADERS)
    assert not_json.status_code == 415  # the content type is JSON's or nothing
    for method in ("GET", "DELETE"):
        refused = user.http.request(method, "/mcp")
        assert refused.status_code == 405 and refused.headers["allow"] == "POST"
