"""The first product's paths, kept for older extension builds (`/save-prompt`,
`/save-response`, `/api/v1/share`, `/api/memories`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from memlayer.api.captures import ShareIn
from memlayer.api.common import Body, Content
from memlayer.api.memories import MemoryCreate
from memlayer.lazy_model import LazyModel


class SavePrompt(Body):
    user_id: str
    prompt: Content
    provider: Annotated[str, Field(max_length=64)] = "unknown"


class SaveResponse(Body):
    user_id: str
    response: Content
    provider: Annotated[str, Field(max_length=64)] = "unknown"


class Saved(LazyModel):
    success: bool = True
    memory_id: str
    job_id: str | None


class CompatShare(ShareIn):
    user_id: str | None = None


class ShareStatus(LazyModel):
    processing_id: str
    status: str
    progress: float
    message: str
    result_id: str | None = None


class CompatMemoryCreate(MemoryCreate, Body):
    """The first product's body: a memory plus the caller's user id."""

    user_id: str | None = None
