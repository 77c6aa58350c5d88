"""Memories API: the five /v1/memories calls and the compatibility path POST /api/memories."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response

from memlayer.auth import Principal
from memlayer.errors import Forbidden, ValidationFailed
from memlayer.models import Body, ListQuery, Memory, MemoryCreate, MemoryPage, MemoryPatch
from memlayer.services import memories
from memlayer.web import create_app, current_user, errors, lambda_handler, writer

router = APIRouter(tags=["memories"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


def _draft(body: MemoryCreate) -> memories.Draft:
    return memories.Draft(
        content=body.content,
        kind=body.kind,
        source=body.source or memories.Source(),
        tags=body.tags,
        metadata=body.metadata,
        occurred_at=body.occurred_at,
    )


async def _create(principal: Principal, body: MemoryCreate, key: str | None) -> Response:
    created = await memories.create(
        principal.user_id,
        _draft(body),
        idempotency_key=key,
        request_body=body.model_dump(mode="json"),
    )
    return Response(
        Memory.model_validate(created.response).model_dump_json(),
        status_code=201,
        media_type="application/json",
        headers={"Location": f"/v1/memories/{created.memory.id}"},
    )


@router.post("/v1/memories", status_code=201, response_model=Memory, responses=errors(409))
async def create_memory(
    body: MemoryCreate,
    idempotency_key: IdempotencyKey = None,
    principal: Principal = Depends(writer),
) -> Response:
    return await _create(principal, body, idempotency_key)


@router.get("/v1/memories", response_model=MemoryPage, responses=errors(400))
async def list_memories(
    query: Annotated[ListQuery, Query()], principal: Principal = Depends(current_user)
) -> MemoryPage:
    return await memories.list_page(principal.user_id, query)


@router.get("/v1/memories/{memory_id}", response_model=Memory)
async def get_memory(memory_id: str, principal: Principal = Depends(current_user)) -> Memory:
    return Memory.of(await memories.get(principal.user_id, memory_id))


def _version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    raw = if_match.strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise ValidationFailed(
            [{"loc": ["header", "If-Match"], "msg": "must be a version number", "type": "int"}]
        )
    return int(raw)


@router.patch("/v1/memories/{memory_id}", response_model=Memory, responses=errors(412))
async def patch_memory(
    memory_id: str,
    body: MemoryPatch,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
    principal: Principal = Depends(writer),
) -> Memory:
    return await memories.patch(principal.user_id, memory_id, body, if_match=_version(if_match))


@router.delete("/v1/memories/{memory_id}", status_code=204, responses=errors(412))
async def delete_memory(memory_id: str, principal: Principal = Depends(writer)) -> Response:
    await memories.delete(principal.user_id, memory_id)
    return Response(status_code=204)


class CompatMemoryCreate(MemoryCreate, Body):
    """The first product's body: a memory plus the caller's user id."""

    user_id: str | None = None


@router.post(
    "/api/memories",
    status_code=201,
    response_model=Memory,
    tags=["compatibility"],
    responses=errors(409),
)
async def compat_create_memory(
    body: CompatMemoryCreate,
    idempotency_key: IdempotencyKey = None,
    principal: Principal = Depends(writer),
) -> Response:
    if body.user_id is not None and body.user_id != principal.user_id:
        raise Forbidden("User ID mismatch")
    return await _create(principal, MemoryCreate.model_validate(body.model_dump()), idempotency_key)


app = create_app(router, title="memlayer memories")
handler = lambda_handler(app)
