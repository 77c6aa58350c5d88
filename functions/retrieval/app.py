"""Retrieval API: hybrid search, context for the current chat, grounded chat answers."""

from fastapi import APIRouter, Depends

from memlayer.auth import Principal
from memlayer.services import retrieval
from memlayer.web import create_app, current_user, lambda_handler

router = APIRouter(tags=["retrieval"])


@router.post("/v1/search", response_model=retrieval.SearchOut)
async def search(
    body: retrieval.SearchIn, principal: Principal = Depends(current_user)
) -> retrieval.SearchOut:
    return await retrieval.search(principal.user_id, body)


@router.post("/v1/context", response_model=retrieval.ContextOut)
async def context(
    body: retrieval.ContextIn, principal: Principal = Depends(current_user)
) -> retrieval.ContextOut:
    return await retrieval.context(principal.user_id, body)


@router.post("/v1/chat", response_model=retrieval.ChatOut)
async def chat(
    body: retrieval.ChatIn, principal: Principal = Depends(current_user)
) -> retrieval.ChatOut:
    return await retrieval.chat(principal.user_id, body)


app = create_app(router, title="memlayer retrieval")
handler = lambda_handler(app)
