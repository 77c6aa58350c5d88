"""Job progress: stored (GET /v1/jobs/{id}) and pushed to the user's live WebSocket clients."""

from __future__ import annotations

import asyncio

from memlayer import push
from memlayer.errors import NotFound
from memlayer.ids import utcnow
from memlayer.models import Job, JobRecord, JobStatus
from memlayer.observability import logger
from memlayer.storage import get_store

STAGE_PROGRESS: dict[JobStatus, float] = {
    "queued": 0.0,
    "analyzing": 0.25,
    "embedding": 0.7,
    "completed": 1.0,
    "failed": 1.0,
}


async def get(user_id: str, job_id: str) -> Job:
    record = await get_store().get_job(user_id, job_id)
    if record is None:
        raise NotFound("job not found")
    if record.kind == "export" and record.status == "completed":
        # Signed now, by this caller's credentials: a stored link may have outlived the
        # worker credentials that signed it.
        from memlayer.services import export

        url = await export.download_url(user_id, job_id, exported_at=record.updated_at)
        record = record.model_copy(update={"download_url": url})
    return Job.of(record)


async def advance(
    job: JobRecord,
    status: JobStatus,
    message: str,
    *,
    error: str | None = None,
    download_url: str | None = None,
) -> JobRecord:
    now = utcnow()
    updated = job.model_copy(
        update={
            "stage_times": {**job.stage_times, status: now},
            "status": status,
            "progress": STAGE_PROGRESS[status],
            "message": message,
            "error": error,
            "download_url": download_url or job.download_url,
            "updated_at": now,
        }
    )
    if await get_store().save_job(updated):
        await notify(updated)
    return updated


async def notify(job: JobRecord) -> None:
    """Best effort: progress is always readable from the job itself; a gone connection is
    pruned, and a push failure never fails the pipeline."""
    store = get_store()
    try:
        from memlayer.services.connections import live_connections

        connections = await live_connections(job.user_id)
        if not connections:
            return
        message = {"type": "job.progress", **Job.of(job).model_dump(mode="json")}
        delivered = await asyncio.gather(
            *(push.post(connection_id, message) for connection_id in connections),
            return_exceptions=True,
        )
        for connection_id, ok in zip(connections, delivered, strict=True):
            if ok is False:
                await store.delete_connection(connection_id)
    except Exception:
        logger.exception("progress push failed", job_id=job.id)
