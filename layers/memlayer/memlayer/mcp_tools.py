"""memlayer as an MCP server: the tools an assistant uses to save, search and recall the
user's memories, served over MCP's streamable HTTP transport with the official SDK.

Every tool calls the same service function as its REST route, validates its arguments with
the same pydantic model (its input schema is that model's JSON schema) and reports failures
as tool errors in the API's one error shape, `{"error", "detail", "request_id"}`. The caller
was authenticated and rate limited by the HTTP layer exactly like a REST call
(`memlayer.web.current_user`); the route hands the Principal over in the request's state.

Stateless: each HTTP request gets a fresh SDK session manager whose task group lives for that
request only, so any Lambda instance answers any request and nothing outlives an invocation
(Mangum runs without lifespan). Responses are JSON; the SDK negotiates the protocol version
(the `initialize` handshake, or the per-request envelope of 2026-07-28)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import JsonSchemaMode
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from memlayer.api.mcp import (
    DeletedMemory,
    MemoryIdIn,
    MemorySummary,
    RecentMemoriesOut,
    SavedMemory,
    SaveMemoryIn,
    SearchMemoriesOut,
    SearchResult,
)
from memlayer.api.memories import Memory
from memlayer.api.retrieval import ContextIn, ContextOut, SearchIn
from memlayer.auth import Principal
from memlayer.errors import Forbidden, MemlayerError
from memlayer.models import ListQuery, Source, display_title
from memlayer.observability import logger, request_id_var
from memlayer.services import memories, retrieval
from memlayer.web import validation_detail

SNIPPET_CHARS = 280

INSTRUCTIONS = (
    "memlayer is the user's long-term memory across assistants and chats. Before answering "
    "anything that may depend on the user's past work, preferences, decisions or earlier "
    "conversations, call get_context (or search_memories) with the question. When the user "
    "tells you something worth keeping (a fact, preference, decision, instruction, or asks you "
    "to remember), call save_memory with one self-contained item. Never invent memories: if "
    "nothing relevant comes back, say so."
)


# ------------------------------------------------------------------ tool inputs and outputs


def _summary(memory: Memory) -> dict[str, Any]:
    title = display_title(memory.analysis, memory.source)
    content = " ".join(memory.content.split())
    snippet = content if len(content) <= SNIPPET_CHARS else content[:SNIPPET_CHARS] + "…"
    return {
        "id": memory.id,
        "title": title,
        "snippet": snippet,
        "kind": memory.kind,
        "tags": list(
            dict.fromkeys([*memory.tags, *(memory.analysis.tags if memory.analysis else [])])
        ),
        "status": memory.status,
        "source_url": memory.source.canonical_url or memory.source.url,
        "created_at": memory.created_at,
    }


# ------------------------------------------------------------------ the tools


async def _save(user_id: str, args: SaveMemoryIn) -> tuple[BaseModel, str | None]:
    created = await memories.create(
        user_id,
        memories.Draft(
            content=args.content,
            source=Source(url=args.source_url),
            tags=args.tags,
            occurred_at=args.occurred_at,
        ),
    )
    saved = created.memory
    out = SavedMemory(
        id=saved.id, status=saved.status, tags=saved.tags, created_at=saved.created_at
    )
    return out, None


async def _search(user_id: str, args: SearchIn) -> tuple[BaseModel, str | None]:
    found = await retrieval.search(user_id, args)
    results = [
        SearchResult(
            **_summary(hit.memory), score=round(hit.score, 4), neighbour_of=hit.neighbour_of
        )
        for hit in found.items
    ]
    return SearchMemoriesOut(results=results), None


async def _context(user_id: str, args: ContextIn) -> tuple[BaseModel, str | None]:
    out = await retrieval.context(user_id, args)
    # The block itself is what the model reads; the structured result also lists its ids.
    return out, out.context or "No relevant memories."


async def _get(user_id: str, args: MemoryIdIn) -> tuple[BaseModel, str | None]:
    return Memory.of(await memories.get(user_id, args.id)), None


async def _recent(user_id: str, args: ListQuery) -> tuple[BaseModel, str | None]:
    page = await memories.list_page(user_id, args)
    items = [MemorySummary(**_summary(memory)) for memory in page.items]
    return RecentMemoriesOut(memories=items, next_cursor=page.next_cursor), None


async def _delete(user_id: str, args: MemoryIdIn) -> tuple[BaseModel, str | None]:
    await memories.delete(user_id, args.id)
    return DeletedMemory(deleted=args.id), None


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    input: type[BaseModel]
    output: type[BaseModel]
    run: Callable[[str, Any], Awaitable[tuple[BaseModel, str | None]]]
    writes: bool
    fields: dict[str, str]  # input field descriptions, for the model

    def tool(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            title=self.title,
            description=self.description,
            input_schema=_schema(self.input, self.fields),
            output_schema=_schema(self.output, {}, mode="serialization"),
            annotations=types.ToolAnnotations(
                title=self.title,
                read_only_hint=not self.writes,
                destructive_hint=self.name == "delete_memory",
                idempotent_hint=self.name != "save_memory",
                open_world_hint=False,
            ),
        )


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            name="save_memory",
            title="Save a memory",
            description=(
                "Save one thing worth remembering to the user's long-term memory: a fact about "
                "them or their work, a preference, a decision, an instruction for the future, or "
                "content they want to keep. Write it so it stands alone without this chat "
                "(who, what, when; resolve 'it' and 'yesterday'). One item per call; do not save "
                "what is already saved or trivia from this conversation. It is searchable by "
                "keyword at once; title, tags and semantic search follow within seconds."
            ),
            input=SaveMemoryIn,
            output=SavedMemory,
            run=_save,
            writes=True,
            fields={
                "content": "The memory, self-contained plain text (at most 100 KB).",
                "tags": "Optional short topic labels, e.g. ['work', 'postgres'].",
                "occurred_at": "When it happened (ISO 8601 with timezone), if not now.",
                "source_url": "The web page it came from, if any.",
            },
        ),
        ToolSpec(
            name="search_memories",
            title="Search memories",
            description=(
                "Search the user's memories and get the best matches with id, title, snippet "
                "and relevance score. Use specific words the memory would contain (names, "
                "products, places) rather than a whole question. Mode 'hybrid' (default) "
                "combines keyword and semantic matching; 'keyword' for exact terms, "
                "'semantic' for paraphrases. Call get_memory for a result's full text."
            ),
            input=SearchIn,
            output=SearchMemoriesOut,
            run=_search,
            writes=False,
            fields={
                "query": "What to look for: keywords or a short phrase.",
                "limit": "How many results (1-100, default 10).",
                "mode": "'hybrid' (default), 'keyword' or 'semantic'.",
                "filters": (
                    "Optional: kind (note, prompt, response, exchange, share, file), tags (any one "
                    "matching is enough), provider, since/until (ISO 8601)."
                ),
                "expand": (
                    "Also list the turns around the best results in their conversation "
                    "(default false); each names its result in neighbour_of."
                ),
            },
        ),
        ToolSpec(
            name="get_context",
            title="Get context for a question",
            description=(
                "Get a ready-to-use block of the user's memories relevant to a question or "
                "task, trimmed to a token budget. Call it before answering anything that may "
                "depend on what the user told you or saved before; quote or use the block, "
                "and say so when it is empty."
            ),
            input=ContextIn,
            output=ContextOut,
            run=_context,
            writes=False,
            fields={
                "query": "The user's question or the task at hand.",
                "max_tokens": "Token budget for the block (50-16000, default 1000).",
                "conversation_text": "Optional recent conversation, to rank what is relevant.",
                "provider": "Optional name of the assistant asking (e.g. 'claude').",
            },
        ),
        ToolSpec(
            name="get_memory",
            title="Read a memory",
            description=(
                "Read one memory in full by its id (from search_memories or list_recent): "
                "content, tags, source, analysis and timestamps."
            ),
            input=MemoryIdIn,
            output=Memory,
            run=_get,
            writes=False,
            fields={"id": "The memory's id."},
        ),
        ToolSpec(
            name="list_recent",
            title="List recent memories",
            description=(
                "List the user's most recent memories, newest first, optionally filtered by "
                "kind, tag, provider, status or date. Use it for 'what did I save lately' or to "
                "browse; use search_memories to find something specific. Pass next_cursor "
                "back as cursor for the next page."
            ),
            input=ListQuery,
            output=RecentMemoriesOut,
            run=_recent,
            writes=False,
            fields={
                "limit": "How many (1-100, default 20).",
                "cursor": "next_cursor from the previous page.",
                "tag": "Only memories with this tag.",
                "since": "Only memories created at or after this time (ISO 8601).",
                "until": "Only memories created before this time (ISO 8601).",
            },
        ),
        ToolSpec(
            name="delete_memory",
            title="Delete a memory",
            description=(
                "Delete one memory by id, permanently (with anything derived from it). Only "
                "when the user asks to forget something; confirm which memory first."
            ),
            input=MemoryIdIn,
            output=DeletedMemory,
            run=_delete,
            writes=True,
            fields={"id": "The id of the memory to delete."},
        ),
    )
}


def _schema(
    model: type[BaseModel], fields: dict[str, str], mode: JsonSchemaMode = "validation"
) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` inlined (older MCP revisions only define
    `type`/`properties`/`required`, and some clients do not follow `$ref`) and the field
    descriptions written for the model."""
    schema = model.model_json_schema(mode=mode)
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    schema = inline(schema)
    for name, description in fields.items():
        schema["properties"][name]["description"] = description
    return dict(schema)


# ------------------------------------------------------------------ the MCP server


def _principal(ctx: ServerRequestContext[Any, Any]) -> Principal:
    principal = ctx.request.state.principal if ctx.request is not None else None
    if not isinstance(principal, Principal):  # only reachable through the authenticated route
        raise MCPError(types.INTERNAL_ERROR, "request is not authenticated")
    return principal


@cache
def _listing(can_write: bool) -> types.ListToolsResult:
    """The tools a caller sees (read-only API keys: only the read tools), built once: JSON
    schema generation takes milliseconds per model."""
    return types.ListToolsResult(
        tools=[spec.tool() for spec in TOOLS.values() if can_write or not spec.writes]
    )


def _tool_error(kind: str, detail: Any) -> types.CallToolResult:
    body = {"error": kind, "detail": detail, "request_id": request_id_var.get()}
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(body, default=str))], is_error=True
    )


async def _list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return _listing("write" in _principal(ctx).scopes)


async def _call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    principal = _principal(ctx)
    spec = TOOLS.get(params.name)
    if spec is None:
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
    try:
        if spec.writes and "write" not in principal.scopes:
            raise Forbidden("this API key is read-only")
        args = spec.input.model_validate(params.arguments or {})
        out, text = await spec.run(principal.user_id, args)
    except ValidationError as exc:
        return _tool_error("validation_error", validation_detail(exc.errors()))
    except MemlayerError as exc:
        return _tool_error(exc.kind, exc.detail)
    except Exception:
        logger.exception("tool failed", tool=spec.name)
        return _tool_error("internal_error", "an unexpected error occurred")
    structured = out.model_dump(mode="json")
    return types.CallToolResult(
        content=[types.TextContent(text=text or json.dumps(structured))],
        structured_content=structured,
    )


server: Server[Any] = Server(
    "memlayer",
    version="1.0.0",
    title="memlayer",
    description="The user's long-term memory: save, search and recall.",
    instructions=INSTRUCTIONS,
    on_list_tools=_list_tools,
    on_call_tool=_call_tool,
)


async def serve(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers one MCP request over streamable HTTP. The SDK's session manager runs its task
    group for this request only: stateless, nothing kept between invocations. The SDK's DNS
    rebinding checks stay off: they guard unauthenticated local servers, and every request
    here carries its bearer token in a header a rebound page cannot set."""
    manager = StreamableHTTPSessionManager(app=server, json_response=True, stateless=True)
    async with manager.run():
        await manager.handle_request(scope, receive, send)


class McpExchange(Response):
    """What the /mcp route returns: the SDK answers the request itself (status, headers and
    the JSON-RPC body), on the same ASGI connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve(scope, receive, send)


# For the OpenAPI document: the shape of what POST /mcp carries (JSON-RPC 2.0).
OPENAPI_POST: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["jsonrpc", "method"],
                    "properties": {
                        "jsonrpc": {"const": "2.0"},
                        "id": {"type": ["string", "integer"]},
                        "method": {
                            "type": "string",
                            "examples": ["initialize", "tools/list", "tools/call"],
                        },
                        "params": {"type": "object"},
                    },
                },
                "example": {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "tools/call",
                    "params": {"name": "search_memories", "arguments": {"query": "staging db"}},
                },
            }
        },
    },
    "responses": {
        "200": {
            "description": "The JSON-RPC response (a tool's failure is a result with isError "
            "and {error, detail, request_id} as its text)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "202": {"description": "A notification was accepted"},
    },
}
