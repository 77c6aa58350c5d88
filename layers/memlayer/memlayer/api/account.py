"""The user's account: usage and limits (`GET /v1/me`), the export, erasing everything."""

from __future__ import annotations

from pydantic import BaseModel

from memlayer.models import Limits, Timestamp, UsageCounts


class Me(BaseModel):
    user_id: str
    usage: UsageCounts
    limits: Limits


class ExportAccepted(BaseModel):
    job_id: str
    status_url: str


class EraseReceipt(BaseModel):
    deleted: dict[str, int]
    completed_at: Timestamp
