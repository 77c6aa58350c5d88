"""Admin: one user's usage and limits, limit overrides, statistics, the dead-letter queues."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from memlayer.api.common import Body
from memlayer.lazy_model import LazyModel
from memlayer.models import Limits, UsageCounts


class UserSummary(LazyModel):
    user_id: str
    usage: UsageCounts
    limits: Limits
    overrides: dict[str, int]


class QueueDepthOut(LazyModel):
    queue: str
    visible: int
    in_flight: int
    delayed: int
    error: str | None = None


class Stats(LazyModel):
    items: dict[str, int]
    users: int = Field(description="Users holding at least one memory.")
    complete: bool = Field(description="False when the count stopped at its time budget.")
    table_item_count: int | None = Field(
        None, description="DynamoDB's own approximate count (refreshed about every 6 hours)."
    )
    queues: dict[str, QueueDepthOut]
    dlqs: dict[str, QueueDepthOut]


class DeadLetterOut(LazyModel):
    queue: str
    message_id: str
    body: str
    truncated: bool
    receive_count: int
    sent_at: int | None
    first_received_at: int | None
    message_attributes: dict[str, str]


class DeadLetters(LazyModel):
    items: list[DeadLetterOut]
    depths: dict[str, QueueDepthOut]


class RedriveIn(Body):
    queue: Annotated[str, Field(max_length=256)] | None = Field(
        None, description="Name of one DLQ; all of them when omitted."
    )
    limit: int = Field(100, ge=1, le=1_000, description="At most this many messages per DLQ.")


class RedriveOut(LazyModel):
    queue: str
    source: str | None
    moved: int
    failed: int
    detail: str | None = None


class RedriveReport(LazyModel):
    results: list[RedriveOut]
    moved: int


class LimitsPatch(Body):
    daily_writes: int | None = Field(None, ge=0)
    max_memories: int | None = Field(None, ge=0)
    max_bytes: int | None = Field(None, ge=0)
