"""MCP server at /mcp: the user's memories as tools for any assistant (Claude, ChatGPT, Cursor,
VS Code...), over MCP's streamable HTTP transport. Stateless and JSON-only, so there is no
standalone SSE stream (GET) and no session to end (DELETE): both answer 405, as the
transport specifies for a server that offers neither."""

from fastapi import APIRouter, Depends, Request, Response

from memlayer import mcp_protocol, mcp_tools
from memlayer.auth import Principal
from memlayer.web import create_app, current_user, error_response, errors, lambda_handler

router = APIRouter(tags=["mcp"])


@router.post(
    "/mcp",
    summary="MCP streamable HTTP endpoint (JSON-RPC: initialize, tools/list, tools/call)",
    description=(
        "The user's memories as MCP tools for any assistant: "
        + ", ".join(mcp_tools.TOOLS)
        + ". Stateless streamable HTTP with JSON responses; send `Accept: application/json, "
        "text/event-stream` and, after `initialize`, `MCP-Protocol-Version`. Same bearer auth, "
        "rate limits and quotas as the REST API; read-only API keys get only the read tools."
    ),
    response_class=Response,
    responses=errors(413),  # the body is JSON-RPC, read by mcp_protocol, so it is not inferred
    openapi_extra=mcp_tools.OPENAPI_POST,
)
async def mcp(request: Request, principal: Principal = Depends(current_user)) -> Response:
    answer = await mcp_protocol.answer(
        mcp_tools.SERVER,
        mcp_tools.Toolbox(principal),
        request.headers.items(),
        await request.body(),
    )
    media_type = "application/json" if answer.body is not None else None
    return Response(answer.body, status_code=answer.status, media_type=media_type)


NOT_OFFERED = "Not offered by this stateless server (`Allow: POST`)"


@router.get(
    "/mcp", summary="No standalone SSE stream", status_code=405, response_description=NOT_OFFERED
)
@router.delete(
    "/mcp", summary="No session to end", status_code=405, response_description=NOT_OFFERED
)
async def mcp_not_offered() -> Response:
    return error_response(
        405, "method_not_allowed", "this MCP server is stateless: POST only", {"Allow": "POST"}
    )


app = create_app(router, title="memlayer mcp")
handler = lambda_handler(app)
