"""The user's account: usage and limits (`GET /v1/me`), the export, erasing everything."""

from __future__ import annotations

from memlayer.lazy_model import LazyModel
from memlayer.models import Limits, Timestamp, UsageCounts


class Me(LazyModel):
    user_id: str
    usage: UsageCounts
    limits: Limits


class ExportAccepted(LazyModel):
    job_id: str
    status_url: str


class EraseReceipt(LazyModel):
    deleted: dict[str, int]
    completed_at: Timestamp
