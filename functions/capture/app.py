"""Capture API: captures from chat sites, shares, job status, and the compatibility paths."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header
from pydantic import BaseModel, Field

from memlayer.auth import Principal
from memlayer.errors import Forbidden
from memlayer.models import Body, Content, Job, Kind
from memlayer.services import captures, jobs, memories
from memlayer.web import create_app, current_user, errors, lambda_handler, writer

router = APIRouter()
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


@router.post("/v1/captures", status_code=202, response_model=captures.CaptureResult)
async def capture(
    body: captures.CaptureIn, principal: Principal = Depends(writer)
) -> captures.CaptureResult:
    return await captures.capture(principal.user_id, body)


@router.post(
    "/v1/shares",
    status_code=202,
    response_model=captures.ShareAccepted,
    responses=errors(404, 409),
)
async def share(
    body: captures.ShareIn,
    idempotency_key: IdempotencyKey = None,
    principal: Principal = Depends(writer),
) -> captures.ShareAccepted:
    return await captures.share(principal.user_id, body, idempotency_key=idempotency_key)


@router.get("/v1/jobs/{job_id}", response_model=Job)
async def get_job(job_id: str, principal: Principal = Depends(current_user)) -> Job:
    return await jobs.get(principal.user_id, job_id)


# ---------------------------------------------------------------- compatibility paths
def _same_user(body_user_id: str, principal: Principal) -> None:
    if body_user_id != principal.user_id:
        raise Forbidden("User ID mismatch")


class SavePrompt(Body):
    user_id: str
    prompt: Content
    provider: Annotated[str, Field(max_length=64)] = "unknown"


class SaveResponse(Body):
    user_id: str
    response: Content
    provider: Annotated[str, Field(max_length=64)] = "unknown"


class Saved(BaseModel):
    success: bool = True
    memory_id: str
    job_id: str | None


async def _save(principal: Principal, content: str, kind: Kind, provider: str) -> Saved:
    created = await memories.create(
        principal.user_id,
        memories.Draft(content=content, kind=kind, source=memories.Source(provider=provider)),
    )
    return Saved(memory_id=created.memory.id, job_id=created.job_id)


@router.post("/save-prompt", status_code=201, response_model=Saved, tags=["compatibility"])
async def save_prompt(body: SavePrompt, principal: Principal = Depends(writer)) -> Saved:
    _same_user(body.user_id, principal)
    return await _save(principal, body.prompt, "prompt", body.provider)


@router.post("/save-response", status_code=201, response_model=Saved, tags=["compatibility"])
async def save_response(body: SaveResponse, principal: Principal = Depends(writer)) -> Saved:
    _same_user(body.user_id, principal)
    return await _save(principal, body.response, "response", body.provider)


class CompatShare(captures.ShareIn):
    user_id: str | None = None


class ShareStatus(BaseModel):
    processing_id: str
    status: str
    progress: float
    message: str
    result_id: str | None = None


@router.post(
    "/api/v1/share",
    status_code=202,
    response_model=ShareStatus,
    tags=["compatibility"],
    responses=errors(404),
)
async def compat_share(body: CompatShare, principal: Principal = Depends(writer)) -> ShareStatus:
    if body.user_id is not None:
        _same_user(body.user_id, principal)
    accepted = await captures.share(principal.user_id, body)
    return ShareStatus(
        processing_id=accepted.job_id,
        status="queued",
        progress=0.0,
        message="queued",
        result_id=accepted.memory_id,
    )


@router.get(
    "/api/v1/share/status/{processing_id}", response_model=ShareStatus, tags=["compatibility"]
)
async def compat_share_status(
    processing_id: str, principal: Principal = Depends(current_user)
) -> ShareStatus:
    job = await jobs.get(principal.user_id, processing_id)
    return ShareStatus(
        processing_id=job.job_id,
        status=job.status,
        progress=job.progress,
        message=job.message,
        result_id=job.memory_id,
    )


app = create_app(router, title="memlayer capture")
handler = lambda_handler(app)
