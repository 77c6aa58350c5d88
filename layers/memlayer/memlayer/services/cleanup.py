"""The scheduled cleanup sweep (hourly, EventBridge Scheduler).

- Expired jobs, WebSocket connections, idempotency records, rate windows, daily counters and
  revoked API keys are deleted. TTL is not relied on (DynamoDB deletes expired items lazily,
  moto never): the sweep finds them by `expires_at` itself.
- A pending captured prompt past its pairing window is never deleted: it is flushed into a
  `prompt` memory (`services.captures.flush`), which removes it. Only captures that expired
  more than `CAPTURE_GRACE_SECONDS` ago are taken (the delayed flush task normally handles
  them on time; the sweep catches lost tasks), and each is claimed first, so two sweeps never
  both flush one.
- Uploads still `awaiting` their file after `orphan_upload_hours` (found through the sparse
  open-uploads index), and upload records past their `purge_after`, lose their S3 objects
  and records.
- The report carries the dead-letter queues' depths.

Every delete is conditional on the item being as it was found, so two sweeps running at once
are harmless, and each counts only what it deleted itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from memlayer import blobs, dlq
from memlayer.ids import iso, new_id, utcnow
from memlayer.models import MemoryRecord
from memlayer.observability import count, logger
from memlayer.services import captures, memories
from memlayer.settings import get_settings
from memlayer.storage import get_store
from memlayer.storage.accounts import EXPIRING_KINDS, AccountsStore
from memlayer.storage.pipeline import PendingCapture
from memlayer.storage.uploads import UploadRecord

T = TypeVar("T")

CAPTURE_GRACE_SECONDS = 600
STUCK_AFTER = timedelta(minutes=15)
GIVE_UP_AFTER = timedelta(hours=24)
CLAIM_STALE_SECONDS = 900
CONCURRENCY = 16
ORPHAN_BATCH = 1_000


async def run_cleanup(now: datetime | None = None) -> dict[str, Any]:
    """One sweep; returns what it did (counts are of what this run itself deleted)."""
    now = now or utcnow()
    stamp = int(now.timestamp())
    run_id = new_id()
    store = get_store()
    limit = asyncio.Semaphore(CONCURRENCY)
    deleted: dict[str, int] = dict.fromkeys((*EXPIRING_KINDS, "uploads", "files"), 0)
    report: dict[str, Any] = {
        "run_id": run_id,
        "now": iso(now),
        "deleted": deleted,
        "captures_flushed": 0,
        "captures_waiting": 0,
        "memories_requeued": 0,
        "memories_failed": 0,
        "errors": 0,
    }

    async def bounded(step: Awaitable[T]) -> T | None:
        async with limit:
            try:
                return await step
            except Exception:
                report["errors"] += 1
                logger.exception("cleanup step failed")
                return None

    # ---- expired items
    steps: list[Awaitable[Any]] = []
    found = await bounded(store.purge_expired(now))
    if found is not None:
        for kind, n in found.deleted.items():
            deleted[kind] += n
        for capture in found.captures:
            if capture.expires_at <= stamp - CAPTURE_GRACE_SECONDS:
                steps.append(bounded(_flush_capture(store, capture, run_id, stamp, report)))
            else:
                report["captures_waiting"] += 1
        for upload in found.uploads:
            steps.append(bounded(_purge_upload(store, upload, run_id, stamp, deleted)))

    # ---- uploads that never received their file
    cutoff = now - timedelta(hours=get_settings().orphan_upload_hours)
    for upload in await get_store().list_uploads_older_than(cutoff, limit=ORPHAN_BATCH):
        if upload.status == "awaiting":
            steps.append(bounded(_purge_upload(store, upload, run_id, stamp, deleted)))

    # ---- memories whose enrichment never started or stalled
    for record in await get_store().stuck_memories(now - STUCK_AFTER):
        steps.append(bounded(_unstick(record, now, report)))
    await asyncio.gather(*steps)

    # ---- dead letters
    depths = await dlq.depths(dlq.dead_letter_queues())
    report["dlqs"] = {
        name: {
            "visible": d.visible,
            "in_flight": d.in_flight,
            **({"error": d.error} if d.error else {}),
        }
        for name, d in depths.items()
    }
    dead = sum(d.visible + d.in_flight for d in depths.values())
    report["dead_letters"] = dead

    for kind, n in deleted.items():
        count(f"CleanupDeleted_{kind}", n)
    count("CleanupCapturesFlushed", report["captures_flushed"])
    count("CleanupMemoriesRequeued", report["memories_requeued"])
    count("CleanupErrors", report["errors"])
    count("DeadLetters", dead)
    logger.info("cleanup finished", report=report)
    return report


async def _unstick(record: MemoryRecord, now: datetime, report: dict[str, Any]) -> None:
    """Re-enqueues a stalled enrichment (the steps are idempotent); after `GIVE_UP_AFTER` the
    memory is marked failed with the reason instead, so it is never silently stuck."""
    if record.job_id is None:
        return
    if record.updated_at < now - GIVE_UP_AFTER:
        update = {"status": "failed", "error": "enrichment did not complete", "updated_at": now}
        await get_store().save_memory(
            record.model_copy(update=update), expected_version=record.version
        )
        report["memories_failed"] += 1
        return
    await memories.enqueue_enrichment(record, record.job_id)
    report["memories_requeued"] += 1


async def _flush_capture(
    store: AccountsStore, capture: PendingCapture, run_id: str, stamp: int, report: dict[str, Any]
) -> None:
    if not await store.claim_expired_capture(capture, run_id, stamp, CLAIM_STALE_SECONDS):
        return  # another sweep has it, or it was paired or replaced meanwhile
    if await captures.flush(
        capture.user_id, capture.provider, capture.conversation_id, capture.capture_id
    ):
        report["captures_flushed"] += 1


async def _purge_upload(
    store: AccountsStore, upload: UploadRecord, run_id: str, stamp: int, deleted: dict[str, int]
) -> None:
    """An upload past its `purge_after` (an expired ticket, or a failed upload kept for a
    while) or still awaiting its file long after the form expired: claimed (so one sweep does
    it), then its objects, then the record if it is unchanged. A failure in between leaves
    the record for a later sweep once the claim is stale."""
    claimed = await store.claim_upload(
        upload.user_id, upload.id, upload.version, run_id, stamp, CLAIM_STALE_SECONDS
    )
    if not claimed:
        return
    files = await blobs.delete_prefix(blobs.upload_prefix(upload.user_id, upload.id))
    if await store.delete_upload_if_unchanged(
        upload.user_id, upload.id, upload.version, upload.status
    ):
        deleted["uploads"] += 1
        deleted["files"] += files
