"""Job progress (`GET /v1/jobs/{id}`, and the WebSocket pushes)."""

from __future__ import annotations

from memlayer.lazy_model import LazyModel
from memlayer.models import JobRecord, JobStatus, Timestamp


class Job(LazyModel):
    job_id: str
    memory_id: str | None
    status: JobStatus
    progress: float
    message: str
    error: str | None = None
    download_url: str | None = None
    created_at: Timestamp
    updated_at: Timestamp
    stage_times: dict[str, Timestamp] = {}

    @classmethod
    def of(cls, record: JobRecord) -> Job:
        return cls(job_id=record.id, **record.model_dump(exclude={"id", "user_id", "kind"}))
