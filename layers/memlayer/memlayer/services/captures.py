"""Captures from AI chat sites, and shares.

A captured prompt waits (durably, in the store) for its response; the response pairs with it
into one `exchange` memory. An unpaired prompt becomes a `prompt` memory after
`capture_pair_window_seconds` (a delayed task; the cleanup sweep catches any task that was
lost). The memory is always created before the pending prompt is removed, so a crash in
between can duplicate a prompt but never lose one."""

from __future__ import annotations

from memlayer import queues
from memlayer.api.captures import CaptureIn, CaptureResult, ShareAccepted, ShareIn
from memlayer.ids import iso, new_id, utcnow
from memlayer.messages import CaptureFlush
from memlayer.models import Source, truncate_stored
from memlayer.observability import logger
from memlayer.services import memories
from memlayer.services.uploads import require_uploads
from memlayer.settings import get_settings
from memlayer.storage import get_store
from memlayer.storage.captures import PendingCapture

CLAIM_LEASE_SECONDS = 60


async def capture(user_id: str, body: CaptureIn) -> CaptureResult:
    if body.role == "prompt":
        return await _hold_prompt(user_id, body)
    return await _pair_response(user_id, body)


async def _hold_prompt(user_id: str, body: CaptureIn) -> CaptureResult:
    settings = get_settings()
    now = utcnow()
    pending = PendingCapture(
        user_id=user_id,
        provider=body.provider,
        conversation_id=body.conversation_id,
        capture_id=new_id(),
        text=body.text,
        url=body.url,
        message_id=body.message_id,
        captured_at=iso(now),
        expires_at=int(now.timestamp()) + settings.capture_pair_window_seconds,
    )
    replaced = await get_store().put_capture(pending)
    if replaced is not None:
        # A second prompt before any response: the first stands alone.
        await _save_prompt(replaced)
    try:
        await queues.send(
            "tasks",
            CaptureFlush(
                user_id=user_id,
                provider=body.provider,
                conversation_id=body.conversation_id,
                capture_id=pending.capture_id,
            ),
            delay_seconds=settings.capture_pair_window_seconds,
        )
    except Exception:
        logger.exception("flush task not sent; the cleanup sweep flushes it")
    return CaptureResult(status="pending", capture_id=pending.capture_id)


async def _pair_response(user_id: str, body: CaptureIn) -> CaptureResult:
    store = get_store()
    pending = await store.get_capture(user_id, body.provider, body.conversation_id)
    source = Source(url=body.url, provider=body.provider, conversation_id=body.conversation_id)
    if pending is not None and not await store.claim_capture(
        user_id, body.provider, body.conversation_id, pending.capture_id, CLAIM_LEASE_SECONDS
    ):
        pending = None  # being flushed right now: the prompt becomes its own memory
    if pending is None:
        created = await memories.create(
            user_id, memories.Draft(content=body.text, kind="response", source=source)
        )
        return CaptureResult(status="saved", memory_id=created.memory.id, job_id=created.job_id)
    content = f"User: {pending.text}\n\nAssistant: {body.text}"
    created = await memories.create(
        user_id,
        memories.Draft(
            content=_fit(content),
            kind="exchange",
            source=source.model_copy(update={"url": body.url or pending.url}),
            metadata={
                k: v
                for k, v in (
                    ("prompt_message_id", pending.message_id),
                    ("response_message_id", body.message_id),
                )
                if v
            },
        ),
    )
    await store.take_capture(user_id, body.provider, body.conversation_id, pending.capture_id)
    return CaptureResult(
        status="saved", paired=True, memory_id=created.memory.id, job_id=created.job_id
    )


def _fit(content: str) -> str:
    """An exchange can exceed one memory's limit even when each half fits; keep the start."""
    return truncate_stored(content, get_settings().max_content_bytes)


async def _save_prompt(pending: PendingCapture) -> str:
    created = await memories.create(
        pending.user_id,
        memories.Draft(
            content=pending.text,
            kind="prompt",
            source=Source(
                url=pending.url,
                provider=pending.provider,
                conversation_id=pending.conversation_id,
            ),
            metadata={"message_id": pending.message_id} if pending.message_id else {},
        ),
    )
    return created.memory.id


async def flush(user_id: str, provider: str, conversation_id: str, capture_id: str) -> str | None:
    """Turns a still-unpaired prompt into a memory; does nothing if it was paired, replaced
    or already flushed. Returns the new memory's id."""
    store = get_store()
    pending = await store.get_capture(user_id, provider, conversation_id)
    if pending is None or pending.capture_id != capture_id:
        return None
    if not await store.claim_capture(
        user_id, provider, conversation_id, capture_id, CLAIM_LEASE_SECONDS
    ):
        return None
    memory_id = await _save_prompt(pending)
    await store.take_capture(user_id, provider, conversation_id, capture_id)
    return memory_id


async def share(
    user_id: str, body: ShareIn, *, idempotency_key: str | None = None
) -> ShareAccepted:
    if body.upload_ids:
        await require_uploads(user_id, body.upload_ids)
    content = body.text or body.url or body.title or "Shared files"
    created = await memories.create(
        user_id,
        memories.Draft(
            content=content,
            kind="share",
            source=Source(url=body.url, title=body.title),
            upload_ids=body.upload_ids,
        ),
        idempotency_key=idempotency_key,
        idempotency_scope="shares",
        request_body=body.model_dump(mode="json"),
    )
    job_id = created.job_id or ""
    return ShareAccepted(
        job_id=job_id, memory_id=created.memory.id, status_url=f"/v1/jobs/{job_id}"
    )
