"""Memories: create (write first, then enqueue), read, list, patch, delete."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memlayer import blobs, queues
from memlayer.api.memories import Memory, MemoryPage, MemoryPatch
from memlayer.content.scrub import scrub
from memlayer.errors import BadRequest, Conflict, NotFound, PreconditionFailed
from memlayer.ids import is_id, new_id, utcnow
from memlayer.messages import StageMessage
from memlayer.models import JobRecord, Kind, ListQuery, MemoryRecord, Source
from memlayer.observability import logger
from memlayer.services.limits import default_limits, limits_for, quota_exceeded
from memlayer.settings import get_settings
from memlayer.storage import get_store
from memlayer.storage.base import IdempotencyClaim, IdempotentReplay, VersionConflict
from memlayer.storage.errors import InvalidCursor, LimitReached


@dataclass
class Draft:
    """What any entry point (memories, captures, shares, uploads) turns into a memory."""

    content: str
    kind: Kind = "note"
    source: Source = field(default_factory=Source)
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
    upload_ids: list[str] = field(default_factory=list)
    enrich: bool = True


@dataclass(frozen=True)
class Created:
    memory: Memory
    job_id: str | None
    replayed: bool = False
    response: dict[str, Any] | None = None


def content_hash(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).lower().encode()).hexdigest()[:32]


def body_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def scrubbed(text: str) -> tuple[str, dict[str, int]]:
    result = scrub(text)
    if not get_settings().scrub_stored_content:
        return text, result.found
    return result.text, result.found


async def create(
    user_id: str,
    draft: Draft,
    *,
    idempotency_key: str | None = None,
    idempotency_scope: str = "memories",
    request_body: Any = None,
) -> Created:
    """Writes the memory (status pending) and its job in one transaction, then enqueues the
    enrichment. The write happens before anything slow or fallible; if the enqueue fails the
    memory is still there and the cleanup sweep enqueues it again."""
    now = utcnow()
    content, secrets_found = scrubbed(draft.content)
    memory_id = new_id()
    job = (
        JobRecord(user_id=user_id, id=new_id(), memory_id=memory_id, created_at=now, updated_at=now)
        if draft.enrich
        else None
    )
    record = MemoryRecord(
        user_id=user_id,
        id=memory_id,
        content=content,
        kind=draft.kind,
        source=draft.source,
        tags=draft.tags,
        metadata=draft.metadata,
        occurred_at=draft.occurred_at or now,
        created_at=now,
        updated_at=now,
        content_hash=content_hash(content),
        size_bytes=len(content.encode()),
        job_id=job.id if job else None,
        secrets_found=secrets_found,
        upload_ids=draft.upload_ids,
    )
    claim = None
    response = Memory.of(record).model_dump(mode="json")
    if idempotency_key:
        claim = IdempotencyClaim(idempotency_scope, idempotency_key, body_hash(request_body))
    try:
        await get_store().create_memory(
            record, job=job, default_limits=default_limits(), idempotency=claim, response=response
        )
    except IdempotentReplay as replay:
        if claim is None or replay.record.body_hash != claim.body_hash:
            raise Conflict("Idempotency-Key was already used with a different body") from None
        first = Memory.model_validate(replay.record.response)
        return Created(
            memory=first, job_id=first.job_id, replayed=True, response=replay.record.response
        )
    except LimitReached as exc:
        raise quota_exceeded(exc) from None
    if job is not None:
        await enqueue_enrichment(record, job.id)
    return Created(memory=Memory.of(record), job_id=job.id if job else None, response=response)


async def enqueue_enrichment(record: MemoryRecord, job_id: str) -> None:
    try:
        await queues.send(
            "analyze", StageMessage(memory_id=record.id, user_id=record.user_id, job_id=job_id)
        )
    except Exception:
        # The memory is durable; the cleanup sweep re-enqueues pending memories.
        logger.exception("enqueue failed; left for the sweep", memory_id=record.id)


async def get(user_id: str, memory_id: str) -> MemoryRecord:
    record = await get_store().get_memory(user_id, memory_id)
    if record is None:
        raise NotFound("memory not found")
    return record


async def list_page(user_id: str, query: ListQuery) -> MemoryPage:
    try:
        records, cursor = await get_store().list_memories(user_id, query)
    except InvalidCursor:
        raise BadRequest("invalid cursor") from None
    return MemoryPage(items=[Memory.of(r) for r in records], next_cursor=cursor)


async def patch(
    user_id: str, memory_id: str, changes: MemoryPatch, *, if_match: int | None
) -> Memory:
    """Applies `changes`. With `If-Match` the caller's version must be current; without it, a
    race with a background enrichment step is retried on the fresh record."""
    for _ in range(3):
        try:
            return await _patch_once(user_id, memory_id, changes, if_match=if_match)
        except VersionConflict:
            if if_match is not None:
                break
    raise PreconditionFailed("memory changed concurrently; fetch it and retry")


async def _patch_once(
    user_id: str, memory_id: str, changes: MemoryPatch, *, if_match: int | None
) -> Memory:
    record = await get(user_id, memory_id)
    if if_match is not None and if_match != record.version:
        raise PreconditionFailed(f"memory is at version {record.version}, not {if_match}")
    now = utcnow()
    update: dict[str, Any] = {"updated_at": now}
    for name in ("tags", "metadata", "occurred_at"):
        value = getattr(changes, name)
        if value is not None:
            update[name] = value
    job = None
    if changes.content is not None:
        content, secrets_found = scrubbed(changes.content)
        if content_hash(content) != record.content_hash:
            job = JobRecord(
                user_id=user_id, id=new_id(), memory_id=memory_id, created_at=now, updated_at=now
            )
            update.update(
                content=content,
                content_hash=content_hash(content),
                size_bytes=len(content.encode()),
                secrets_found=secrets_found,
                status="pending",
                error=None,
                job_id=job.id,
                # The old analysis describes the old text; re-enrichment writes a new one.
                analysis=None,
            )
    limits = await limits_for(user_id)
    try:
        saved = await get_store().save_memory(
            record.model_copy(update=update),
            expected_version=record.version,
            max_bytes=limits.max_bytes,
            job=job,  # the edit's new job, in the same write
        )
    except LimitReached as exc:
        raise quota_exceeded(exc) from None
    if job is not None:
        await enqueue_enrichment(saved, job.id)
    return Memory.of(saved)


async def delete(user_id: str, memory_id: str) -> None:
    """Deletes the memory and what was derived from it (vector, job, uploaded files).

    The files go first: if deleting them fails, the memory is still there and the client's
    retry finishes the job, instead of a memory gone and its files left with no owner."""
    store = get_store()
    current = await store.get_memory(user_id, memory_id)
    if current is None:
        raise NotFound("memory not found")
    if current.upload_ids:
        await delete_uploads(user_id, current.upload_ids)
    for _ in range(3):  # a background enrichment step may save between read and delete
        try:
            record = await store.delete_memory(user_id, memory_id)
            break
        except VersionConflict:
            continue
    else:
        raise PreconditionFailed("memory changed concurrently; retry the delete")
    if record is None:
        raise NotFound("memory not found")
    attached_meanwhile = set(record.upload_ids) - set(current.upload_ids)
    if attached_meanwhile:
        await delete_uploads(user_id, sorted(attached_meanwhile))


async def delete_uploads(user_id: str, upload_ids: list[str]) -> int:
    """Deletes these uploads of `user_id`: each one's own object (its exact key, never a
    prefix), then the records. Ids that are not theirs or do not exist are ignored. Returns how
    many records were addressed."""
    ids = sorted({upload_id for upload_id in upload_ids if is_id(upload_id)})
    if not ids:
        return 0
    store = get_store()
    records = await asyncio.gather(*(store.get_upload(user_id, i) for i in ids))
    keys = [
        record.key
        for record in records
        if record is not None and blobs.parse_key(record.key) == (user_id, record.id)
    ]
    await blobs.delete_keys(keys)
    return await store.delete_uploads(user_id, ids)
