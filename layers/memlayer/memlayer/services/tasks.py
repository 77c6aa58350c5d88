"""Deferred tasks, dispatched by `type`. Unknown or malformed tasks raise, so after their
retries they rest in the tasks DLQ for inspection instead of vanishing."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from memlayer.services import captures, export, retrieval
from memlayer.services.enrichment import PoisonMessage


class CaptureFlush(BaseModel):
    type: str
    user_id: str
    provider: str
    conversation_id: str
    capture_id: str


class UserTask(BaseModel):
    type: str
    user_id: str
    job_id: str | None = None


async def dispatch(message: Any) -> None:
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "capture.flush":
        flush = CaptureFlush.model_validate(message)
        await captures.flush(flush.user_id, flush.provider, flush.conversation_id, flush.capture_id)
    elif kind == "export":
        task = UserTask.model_validate(message)
        await export.run_export(task.user_id, task.job_id or "")
    elif kind == "reembed":
        await retrieval.reembed(UserTask.model_validate(message).user_id)
    else:
        raise PoisonMessage(f"unknown task type: {kind!r}")
