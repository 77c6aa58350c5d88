"""Admin API: one user's usage and limits, limit overrides, statistics, dead letters.

Every route needs a token with the admin role; everyone else (API keys included) gets 404,
so the paths do not advertise themselves."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from memlayer.auth import Principal
from memlayer.models import Limits, LimitsPatch
from memlayer.services import admin as service
from memlayer.web import admin, create_app, lambda_handler

router = APIRouter(tags=["admin"], dependencies=[Depends(admin)])
UserId = Annotated[str, Path(min_length=1, max_length=256)]


@router.get("/v1/admin/users/{user_id}", response_model=service.UserSummary)
async def get_user(user_id: UserId) -> service.UserSummary:
    return await service.user_summary(user_id)


@router.put("/v1/admin/users/{user_id}/limits", response_model=Limits)
async def put_limits(
    user_id: UserId, body: LimitsPatch, principal: Principal = Depends(admin)
) -> Limits:
    return await service.set_limits(user_id, body, by=principal.user_id)


@router.get("/v1/admin/stats", response_model=service.Stats)
async def get_stats() -> service.Stats:
    return await service.stats()


@router.get("/v1/admin/dlq", response_model=service.DeadLetters)
async def get_dead_letters(
    queue: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> service.DeadLetters:
    return await service.dead_letters(queue, limit)


@router.post("/v1/admin/dlq/redrive", response_model=service.RedriveReport)
async def redrive(body: service.RedriveIn) -> service.RedriveReport:
    return await service.redrive(body)


app = create_app(router, title="memlayer admin")
handler = lambda_handler(app)
