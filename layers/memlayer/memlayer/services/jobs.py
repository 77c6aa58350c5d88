"""Job progress: stored (GET /v1/jobs/{id}) and pushed to the user's live WebSocket clients."""

from __future__ import annotations

import asyncio
from datetime import datetime

from memlayer import blobs, push
from memlayer.api.jobs import Job
from memlayer.errors import NotFound
from memlayer.ids import utcnow
from memlayer.models import JobRecord, JobStatus
from memlayer.observability import logger
from memlayer.services.connections import live_connections
from memlayer.storage import get_store

STAGE_PROGRESS: dict[JobStatus, float] = {
    "queued": 0.0,
    "analyzing": 0.25,
    "embedding": 0.7,
    "completed": 1.0,
    "failed": 1.0,
}
# Asked-for lifetime of an export's download URL. Signed with a Lambda role's temporary
# credentials it stops working when they expire (hours), so `download_url` signs a fresh one on
# demand.
DOWNLOAD_URL_SECONDS = 24 * 3600


async def download_url(user_id: str, job_id: str, *, exported_at: datetime | None = None) -> str:
    """A fresh presigned URL for a finished export (the job's stored one may have expired)."""
    stamp = (exported_at or utcnow()).strftime("%Y%m%d")
    return await blobs.presigned_get(
        blobs.export_key(user_id, job_id),
        expires_in=DOWNLOAD_URL_SECONDS,
        filename=f"memlayer-export-{stamp}.zip",
    )


async def get(user_id: str, job_id: str) -> Job:
    record = await get_store().get_job(user_id, job_id)
    if record is None:
        raise NotFound("job not found")
    if record.kind == "export" and record.status == "completed":
        # Signed now, by this caller's credentials: a stored link may have outlived the
        # worker credentials that signed it.
        url = await download_url(user_id, job_id, exported_at=record.updated_at)
        record = record.model_copy(update={"download_url": url})
    return Job.of(record)


def advanced(
    job: JobRecord,
    status: JobStatus,
    message: str,
    *,
    error: str | None = None,
    download_url: str | None = None,
) -> JobRecord:
    """The job at `status`, not saved yet: a pipeline stage saves it with its memory
    (`Store.save_memory(job=...)`) and then `notify`s."""
    now = utcnow()
    return job.model_copy(
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


async def advance(
    job: JobRecord,
    status: JobStatus,
    message: str,
    *,
    error: str | None = None,
    download_url: str | None = None,
) -> JobRecord:
    """Saves the job at `status` on its own (it still exists) and pushes it."""
    updated = advanced(job, status, message, error=error, download_url=download_url)
    if await get_store().save_job(updated):
        await notify(updated)
    return updated


async def notify(job: JobRecord) -> None:
    """Best effort: progress is always readable from the job itself; a gone connection is
    pruned, and a push failure never fails the pipeline."""
    store = get_store()
    try:
        connections = await live_connections(job.user_id)
        if not connections:
            return
        targets = list(connections)  # the list is shared with the batch's other records
        message = {"type": "job.progress", **Job.of(job).model_dump(mode="json")}
        delivered = await asyncio.gather(
            *(push.post(connection_id, message) for connection_id in targets),
            return_exceptions=True,
        )
        for connection_id, ok in zip(targets, delivered, strict=True):
            if ok is False:
                if connection_id in connections:
                    connections.remove(connection_id)
                await store.delete_connection(connection_id)
    except Exception:
        logger.exception("progress push failed", job_id=job.id)
