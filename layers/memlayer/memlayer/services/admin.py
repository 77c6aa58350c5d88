"""Admin: one user's usage and limits, per-user limit overrides, table and queue statistics,
and the dead-letter queues (inspect, redrive). Routes are guarded by `memlayer.web.admin`."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from memlayer import dlq
from memlayer.errors import NotFound
from memlayer.models import Body, Limits, LimitsPatch, UsageCounts
from memlayer.observability import logger
from memlayer.services.limits import limits_of
from memlayer.storage import get_store

# The admin function times out at 15 s (template Globals); the count stops well before.
STATS_BUDGET_SECONDS = 8.0


class UserSummary(BaseModel):
    user_id: str
    usage: UsageCounts
    limits: Limits
    overrides: dict[str, int]


class QueueDepthOut(BaseModel):
    queue: str
    visible: int
    in_flight: int
    delayed: int
    error: str | None = None


class Stats(BaseModel):
    items: dict[str, int]
    users: int = Field(description="Users holding at least one memory.")
    complete: bool = Field(description="False when the count stopped at its time budget.")
    table_item_count: int | None = Field(
        None, description="DynamoDB's own approximate count (refreshed about every 6 hours)."
    )
    queues: dict[str, QueueDepthOut]
    dlqs: dict[str, QueueDepthOut]


class DeadLetterOut(BaseModel):
    queue: str
    message_id: str
    body: str
    truncated: bool
    receive_count: int
    sent_at: int | None
    first_received_at: int | None
    message_attributes: dict[str, str]


class DeadLetters(BaseModel):
    items: list[DeadLetterOut]
    depths: dict[str, QueueDepthOut]


class RedriveIn(Body):
    queue: Annotated[str, Field(max_length=256)] | None = Field(
        None, description="Name of one DLQ; all of them when omitted."
    )
    limit: int = Field(100, ge=1, le=1_000, description="At most this many messages per DLQ.")


class RedriveOut(BaseModel):
    queue: str
    source: str | None
    moved: int
    failed: int
    detail: str | None = None


class RedriveReport(BaseModel):
    results: list[RedriveOut]
    moved: int


def _depth_out(depth: dlq.QueueDepth) -> QueueDepthOut:
    return QueueDepthOut.model_validate(depth, from_attributes=True)


async def user_summary(user_id: str) -> UserSummary:
    profile = await get_store().get_profile(user_id)
    return UserSummary(
        user_id=user_id,
        usage=profile.usage,
        limits=limits_of(profile),
        overrides=dict(profile.limits_override),
    )


async def set_limits(user_id: str, patch: LimitsPatch, *, by: str | None = None) -> Limits:
    """Merges the given limits into the user's overrides and returns the effective limits.
    (0 disables a limit, like the defaults.)"""
    store = get_store()
    profile = await store.get_profile(user_id)
    changes = patch.model_dump(exclude_none=True)
    if not changes:
        return limits_of(profile)
    merged = {**profile.limits_override, **changes}
    updated = await store.set_limits(user_id, merged)
    logger.info("limits set", target_user=user_id, limits=merged, admin=by)
    return limits_of(updated)


async def queue_depths() -> tuple[dict[str, QueueDepthOut], dict[str, QueueDepthOut]]:
    work = await dlq.depths(dlq.work_queues())
    dead = await dlq.depths(dlq.dead_letter_queues())
    return (
        {name: _depth_out(d) for name, d in work.items()},
        {name: _depth_out(d) for name, d in dead.items()},
    )


async def stats() -> Stats:
    store = get_store()
    counts, users, complete = await store.count_items(time_budget_seconds=STATS_BUDGET_SECONDS)
    queues, dlqs = await queue_depths()
    return Stats(
        items=counts,
        users=users,
        complete=complete,
        table_item_count=await store.approximate_item_count(),
        queues=queues,
        dlqs=dlqs,
    )


def _dlq_urls(queue: str | None) -> dict[str, str]:
    known = dlq.dead_letter_queues()
    if queue is None:
        return known
    if queue not in known:
        raise NotFound(f"no dead-letter queue named {queue!r}")
    return {queue: known[queue]}


async def dead_letters(queue: str | None = None, limit: int = 10) -> DeadLetters:
    """Peeks at up to `limit` messages per DLQ; they stay in the queue."""
    urls = _dlq_urls(queue)
    items: list[DeadLetterOut] = []
    for url in urls.values():
        for letter in await dlq.peek(url, limit=limit):
            items.append(DeadLetterOut.model_validate(letter, from_attributes=True))
    depths = await dlq.depths(urls)
    return DeadLetters(items=items, depths={n: _depth_out(d) for n, d in depths.items()})


async def redrive(body: RedriveIn) -> RedriveReport:
    """Moves dead letters back to the queues they came from."""
    results: list[RedriveOut] = []
    for url in _dlq_urls(body.queue).values():
        result = await dlq.redrive(url, limit=body.limit)
        results.append(
            RedriveOut(
                queue=result.queue,
                source=result.source,
                moved=result.moved,
                failed=result.failed,
                detail=None if result.source else "no queue dead-letters into this one",
            )
        )
    moved = sum(r.moved for r in results)
    logger.info("dead letters redriven", moved=moved)
    return RedriveReport(results=results, moved=moved)
