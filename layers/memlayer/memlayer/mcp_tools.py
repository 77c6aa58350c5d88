"""memlayer as an MCP server: the tools an assistant uses to save, search and recall the
user's memories, served over MCP's streamable HTTP transport (memlayer.mcp_protocol).

Every tool calls the same service function as its REST route, validates its arguments with
the same pydantic model (its input schema is that model's JSON schema) and reports failures
as tool errors in the API's one error shape, `{"error", "detail", "request_id"}`. The caller
was authenticated and rate limited by the HTTP layer exactly like a REST call
(`memlayer.web.current_user`); the route hands its Principal to `Toolbox`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import JsonSchemaMode

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
from memlayer.mcp_protocol import INVALID_PARAMS, McpError, Server
from memlayer.models import ListQuery, Source, display_title
from memlayer.observability import logger, request_id_var
from memlayer.services import memories
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
    # lazy: ranking loads numpy and the embedders (~100 ms); only the two search tools rank,
    # so initialize, tools/list and the other tools never wait for it on a cold start
    from memlayer.services import retrieval

    found = await retrieval.search(user_id, args)
    results = [
        SearchResult(
            **_summary(hit.memory), score=round(hit.score, 4), neighbour_of=hit.neighbour_of
        )
        for hit in found.items
    ]
    return SearchMemoriesOut(results=results), None


async def _context(user_id: str, args: ContextIn) -> tuple[BaseModel, str | None]:
    from memlayer.services import retrieval  # lazy, as in `_search`

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

    def tool(self) -> dict[str, Any]:
        """The tool's `tools/list` entry."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": _schema(self.input, self.fields),
            "outputSchema": _schema(self.output, {}, mode="serialization"),
            "annotations": {
                "title": self.title,
                "readOnlyHint": not self.writes,
                "destructiveHint": self.name == "delete_memory",
                "idempotentHint": self.name != "save_memory",
                "openWorldHint": False,
            },
        }


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

SERVER = Server(
    name="memlayer",
    title="memlayer",
    version="1.0.0",
    description="The user's long-term memory: save, search and recall.",
    instructions=INSTRUCTIONS,
)


@cache
def _listing(can_write: bool) -> list[dict[str, Any]]:
    """The tools a caller sees (read-only API keys: only the read tools), built on first use
    and kept: JSON schema generation takes milliseconds per model."""
    return [spec.tool() for spec in TOOLS.values() if can_write or not spec.writes]


def _tool_error(kind: str, detail: Any) -> dict[str, Any]:
    body = {"error": kind, "detail": detail, "request_id": request_id_var.get()}
    return {"content": [{"type": "text", "text": json.dumps(body, default=str)}], "isError": True}


@dataclass(frozen=True)
class Toolbox:
    """The tools as one authenticated caller may use them (memlayer.mcp_protocol.Tools)."""

    principal: Principal

    def list(self) -> list[dict[str, Any]]:
        return _listing("write" in self.principal.scopes)

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        spec = TOOLS.get(name)
        if spec is None:
            raise McpError(INVALID_PARAMS, f"Unknown tool: {name}")
        try:
            if spec.writes and "write" not in self.principal.scopes:
                raise Forbidden("this API key is read-only")
            args = spec.input.model_validate(arguments)
            out, text = await spec.run(self.principal.user_id, args)
        except ValidationError as exc:
            return _tool_error("validation_error", validation_detail(exc.errors()))
        except MemlayerError as exc:
            return _tool_error(exc.kind, exc.detail)
        except Exception:
            logger.exception("tool failed", tool=spec.name)
            return _tool_error("internal_error", "an unexpected error occurred")
        structured = out.model_dump(mode="json")
        return {
            "content": [{"type": "text", "text": text or json.dumps(structured)}],
            "structuredContent": structured,
            "isError": False,
        }


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
