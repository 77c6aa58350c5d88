"""Account API: the caller's usage and limits, API keys, export, and erasing everything.

Managing API keys and erasing the account need a signed-in session (a Supabase JWT): an API
key may read and (with the write scope) write memories, but cannot mint or revoke keys or
delete the account, so a leaked key can be revoked by its owner and can do no more than its
scopes allow."""

from fastapi import APIRouter, Depends, Response

from memlayer.auth import Principal
from memlayer.errors import Forbidden
from memlayer.services import account, api_keys, export
from memlayer.web import create_app, current_user, errors, lambda_handler

router = APIRouter(tags=["account"])


async def session_user(principal: Principal = Depends(current_user)) -> Principal:
    if principal.via != "jwt":
        raise Forbidden("API keys cannot manage API keys or delete the account; sign in")
    return principal


@router.get("/v1/me", response_model=account.Me)
async def get_me(principal: Principal = Depends(current_user)) -> account.Me:
    return await account.me(principal.user_id)


@router.delete("/v1/me", response_model=account.EraseReceipt, responses=errors(403))
async def delete_me(principal: Principal = Depends(session_user)) -> account.EraseReceipt:
    return await account.erase(principal.user_id)


@router.post(
    "/v1/api-keys",
    status_code=201,
    response_model=api_keys.ApiKeyCreated,
    responses=errors(403, 409),
)
async def create_api_key(
    body: api_keys.ApiKeyCreate, principal: Principal = Depends(session_user)
) -> api_keys.ApiKeyCreated:
    record, key = await api_keys.create_api_key(principal.user_id, body.name, list(body.scopes))
    return api_keys.ApiKeyCreated(**api_keys.ApiKey.of(record).model_dump(), key=key)


@router.get("/v1/api-keys", response_model=api_keys.ApiKeyList, responses=errors(403))
async def list_api_keys(principal: Principal = Depends(session_user)) -> api_keys.ApiKeyList:
    records = await api_keys.list_api_keys(principal.user_id)
    return api_keys.ApiKeyList(items=[api_keys.ApiKey.of(r) for r in records])


@router.delete("/v1/api-keys/{key_id}", status_code=204, responses=errors(403))
async def revoke_api_key(key_id: str, principal: Principal = Depends(session_user)) -> Response:
    await api_keys.revoke_api_key(principal.user_id, key_id)
    return Response(status_code=204)


@router.post("/v1/export", status_code=202, response_model=account.ExportAccepted)
async def start_export(principal: Principal = Depends(current_user)) -> account.ExportAccepted:
    job = await export.start_export(principal.user_id)
    return account.ExportAccepted(job_id=job.id, status_url=f"/v1/jobs/{job.id}")


app = create_app(router, title="memlayer account")
handler = lambda_handler(app)
