"""The enrichment pipeline: analyze (fetch, extract, scrub, LLM analysis) then embed.

Messages are `memlayer.messages.StageMessage`s (`{memory_id, user_id, job_id}`). Each step is
idempotent: it checks the memory's state first (`analyzed_hash`, `embedded_hash` against
`content_hash`), so a redelivered message changes nothing twice. A retryable provider failure
raises (SQS redelivers); on the last delivery the step falls back (offline analysis) or records
the reason, so nothing is stuck and nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np

from memlayer import invocation, queues
from memlayer.ai.analysis import Analyzer
from memlayer.ai.analyzers import get_analyzer
from memlayer.ai.embeddings import get_embedder
from memlayer.ai.heuristic_analysis import HeuristicAnalyzer
from memlayer.content.extract import extract_page
from memlayer.content.fetch import FetchError, fetch_url
from memlayer.content.scrub import scrub
from memlayer.errors import ProviderError
from memlayer.ids import utcnow
from memlayer.messages import Delivery, StageMessage
from memlayer.models import JobRecord, MemoryRecord, Usage, truncate_stored
from memlayer.observability import count, logger
from memlayer.services import jobs
from memlayer.services.memories import content_hash, scrubbed
from memlayer.settings import get_settings
from memlayer.storage import get_store
from memlayer.storage.base import StoredVector, VersionConflict

EMBED_TEXT_CHARS = 8_000


async def _current(message: StageMessage) -> tuple[MemoryRecord, JobRecord | None] | None:
    """The memory and job this message is about, or None when there is nothing left to do
    (the memory was deleted, or an edit superseded this job)."""
    # Read together (one request; on DynamoDB with the batch's other reads too); the job is
    # wasted only when the memory is gone or superseded.
    record, job = await get_store().get_memory_and_job(
        message.user_id, message.memory_id, message.job_id
    )
    if record is None or record.job_id != message.job_id:
        return None
    return record, job


# ------------------------------------------------------------------------------ analyze
async def analyze(delivery: Delivery[StageMessage]) -> StageMessage | None:
    """Analyzes the memory (unless an earlier delivery did); returns the message for the embed
    step, which `hand_to_embed` sends with the batch's others, or None when there is nothing
    left to do."""
    current = await _current(delivery.message)
    if current is None:
        return None
    record, job = current
    if record.analyzed_hash != record.content_hash:
        analyzer = get_analyzer(get_settings())
        if job is not None:
            job = await _begin_analysis(record, job, analyzer)
            # saved with the analysis, in the same write
            job = jobs.advanced(job, "embedding", "computing embeddings")
        await _enrich(record, analyzer, final=delivery.final, job=job)
    elif job is not None and job.status in ("queued", "analyzing"):
        # analyzed by an earlier delivery that did not save the job with it
        await jobs.advance(job, "embedding", "computing embeddings")
    return delivery.message


async def hand_to_embed(messages: list[StageMessage]) -> dict[int, Exception]:
    """Sends the batch's analyzed memories to the embed queue in one request; the failures by
    position (such a record is redelivered and, analyzed already, only sent again)."""
    failed = await queues.send_batch("embed", messages)
    return {position: QueueSendError(code) for position, code in failed.items()}


class QueueSendError(Exception):
    """SQS did not accept a message of a batch send."""


async def _begin_analysis(record: MemoryRecord, job: JobRecord, analyzer: Analyzer) -> JobRecord:
    """The job at "analyzing", pushed. It is saved on its own only when the analysis waits on
    the network (a provider, a shared URL to fetch), so a client reading the job sees the
    stage while it lasts; a local analysis ends within milliseconds, and the stage's start is
    saved with its result instead (`stage_times`), one write fewer per memory."""
    if analyzer.remote or _needs_fetch(record):
        return await jobs.advance(job, "analyzing", "reading and analyzing")
    started = jobs.advanced(job, "analyzing", "reading and analyzing")
    await jobs.notify(started)
    return started


def _needs_fetch(record: MemoryRecord) -> bool:
    return (
        record.kind == "share" and bool(record.source.url) and record.source.canonical_url is None
    )


async def _enrich(
    record: MemoryRecord, analyzer: Analyzer, *, final: bool, job: JobRecord | None
) -> MemoryRecord:
    """Analyzes the memory and saves the result with `job` (its progress) in one write."""
    update: dict[str, Any] = {}
    if _needs_fetch(record):
        update.update(await _fetch_share(record, final=final))
    content = update.get("content", record.content)
    source = update.get("source", record.source)

    text_for_model = scrub(content).text
    vocabulary = await _tag_vocabulary(record.user_id)
    existing_tags = sorted(vocabulary)
    hints: dict[str, Any] = {"title_hint": source.title, "url": source.url}
    try:
        outcome = await analyzer.analyze(text_for_model, existing_tags=existing_tags, **hints)
    except ProviderError as exc:
        if exc.retryable and not final:
            raise
        count("AnalysisFallback")
        outcome = await HeuristicAnalyzer().analyze(
            text_for_model, existing_tags=existing_tags, **hints
        )
        update["error"] = f"analysis fell back to offline: {exc.reason}"
    if outcome.fallback_reason:
        update["error"] = f"analysis fell back to offline: {outcome.fallback_reason}"
    usage = record.usage
    update.update(
        analysis=outcome.analysis,
        analyzed_hash=record.content_hash if "content" not in update else update["content_hash"],
        status="processing",
        updated_at=utcnow(),
        usage=Usage(
            input_tokens=usage.input_tokens + outcome.input_tokens,
            output_tokens=usage.output_tokens + outcome.output_tokens,
            provider_calls=usage.provider_calls + outcome.provider_calls,
        ),
    )
    saved = await _save(record, update, job)
    new_tags = set(outcome.analysis.tags) - vocabulary
    if new_tags:  # a vocabulary only grows: tags it has need no write
        await get_store().add_user_tags(record.user_id, sorted(new_tags))
        vocabulary.update(new_tags)
    return saved


async def _tag_vocabulary(user_id: str) -> set[str]:
    """The user's tags, read once per invocation (the batch's records share the set, and
    what one adds the next one sees)."""

    async def read() -> set[str]:
        return set(await get_store().get_user_tags(user_id))

    return await invocation.once(("tag_vocabulary", user_id), read)


async def _fetch_share(record: MemoryRecord, *, final: bool) -> dict[str, Any]:
    """Fetches a shared URL; the memory's content becomes the user's note (if any) followed by
    the page's readable text. A failed fetch keeps what the user shared and records why."""
    settings = get_settings()
    url = record.source.url or ""
    try:
        page = await fetch_url(
            url,
            allow_hosts=settings.fetch_allow_hosts,
            timeout=settings.fetch_timeout_seconds,
            max_bytes=settings.fetch_max_bytes,
        )
    except FetchError as exc:
        if exc.retryable and not final:
            raise
        count("FetchFailed")
        source = record.source.model_copy(update={"canonical_url": url})
        return {"source": source, "error": f"could not fetch the URL: {exc.reason}"}
    extracted = extract_page(page.text, page.final_url)
    note = record.content if record.content.strip() != url else None
    body = extracted.text or extracted.description or ""
    content = "\n\n".join(part for part in (note, extracted.title, body) if part) or url
    content, secrets_found = scrubbed(truncate_stored(content, settings.max_content_bytes))
    source = record.source.model_copy(
        update={
            "canonical_url": extracted.canonical_url or page.final_url,
            "title": record.source.title or extracted.title,
        }
    )
    return {
        "content": content,
        "content_hash": content_hash(content),
        "size_bytes": len(content.encode()),
        "secrets_found": {**record.secrets_found, **secrets_found},
        "source": source,
    }


async def _save(
    record: MemoryRecord,
    update: dict[str, Any],
    job: JobRecord | None = None,
    vector: StoredVector | None = None,
) -> MemoryRecord:
    """Saves the step's result, and `job` (the step's progress) and `vector` in the same
    write, then pushes the progress; unless the memory changed meanwhile: a content edit has
    its own job then, so this one's result is dropped (the edit's job supersedes it)."""
    store = get_store()
    try:
        saved = await store.save_memory(
            record.model_copy(update=update),
            expected_version=record.version,
            job=job,
            vector=vector,
        )
    except VersionConflict:
        latest = await store.get_memory(record.user_id, record.id)
        if latest is None or (latest.content_hash, latest.job_id) != (
            record.content_hash,
            record.job_id,
        ):
            raise SupersededError(record.id) from None
        merged = {k: v for k, v in update.items() if k not in ("tags", "metadata")}
        saved = await store.save_memory(
            latest.model_copy(update=merged),
            expected_version=latest.version,
            job=job,
            vector=vector,
        )
    if job is not None:
        await jobs.notify(job)
    return saved


class SupersededError(Exception):
    """The memory was edited or deleted while this step ran; nothing to do."""


# ------------------------------------------------------------------------------ embed
def embedding_text(record: MemoryRecord) -> str:
    parts = []
    if record.analysis:
        parts += [record.analysis.title, record.analysis.description]
    parts.append(record.content)
    return "\n".join(parts)[:EMBED_TEXT_CHARS]


async def embed(deliveries: list[Delivery[StageMessage]]) -> dict[int, Exception]:
    """Embeds a whole SQS batch with one provider call. Returns the failures by position.

    One record never fails another: deliveries for the same memory (SQS is at-least-once, and
    an edit during enrichment enqueues again) are handled once and share that outcome, and a
    failed write fails only the records it was for."""
    settings = get_settings()
    embedder = get_embedder(settings)
    failures: dict[int, Exception] = {}
    positions_of: dict[tuple[str, str, str], list[int]] = {}
    for position, delivery in enumerate(deliveries):
        message = delivery.message
        key = (message.user_id, message.memory_id, message.job_id)
        positions_of.setdefault(key, []).append(position)
    # the most-received delivery of a memory decides whether its failure is final
    unique = [
        max(positions, key=lambda p: deliveries[p].receive_count)
        for positions in positions_of.values()
    ]

    def fail(position: int, exc: Exception) -> None:
        message = deliveries[position].message
        for same in positions_of[(message.user_id, message.memory_id, message.job_id)]:
            failures[same] = exc

    todo: list[tuple[int, MemoryRecord, JobRecord | None]] = []
    currents = await asyncio.gather(
        *(_current(deliveries[position].message) for position in unique), return_exceptions=True
    )
    for position, current in zip(unique, currents, strict=True):
        if isinstance(current, Exception):
            fail(position, current)
            continue
        if current is None or isinstance(current, BaseException):
            continue
        record, job = current
        if record.embedded_hash == record.content_hash and record.embedding_space == embedder.space:
            if job is not None and job.status != "completed":
                try:
                    await jobs.advance(job, "completed", "ready")
                except Exception as exc:  # this record's failure, not the batch's
                    fail(position, exc)
            continue
        todo.append((position, record, job))
    if not todo:
        return failures
    try:
        vectors = await embedder.embed([embedding_text(record) for _, record, _ in todo])
    except ProviderError as exc:
        reason = f"embedding failed: {exc.reason}"
        ends = []
        for position, record, job in todo:
            if exc.retryable and not deliveries[position].final:
                fail(position, exc)
            else:
                ends.append((position, _fail(record, job, reason)))
        outcomes = await asyncio.gather(*(end for _, end in ends), return_exceptions=True)
        for (position, _), outcome in zip(ends, outcomes, strict=True):
            if isinstance(outcome, Exception):
                fail(position, outcome)
        return failures
    count("EmbeddingCalls")
    count("MemoriesEmbedded", len(todo))

    async def mark_ready(record: MemoryRecord, job: JobRecord | None, vector: np.ndarray) -> None:
        ready = {
            "status": "ready",
            "embedded_hash": record.content_hash,
            "embedding_space": embedder.space,
            "updated_at": utcnow(),
        }
        stored = StoredVector(
            memory_id=record.id,
            space=embedder.space,
            content_hash=record.content_hash,
            vector=np.asarray(vector, dtype="<f2").tobytes(),
        )
        completed = None if job is None else jobs.advanced(job, "completed", "ready")
        # the vector and `ready` in one write: a memory edited or deleted meanwhile gets neither
        with contextlib.suppress(SupersededError):
            await _save(record, ready, completed, vector=stored)

    outcomes = await asyncio.gather(
        *(
            mark_ready(record, job, vector)
            for (_, record, job), vector in zip(todo, vectors, strict=True)
        ),
        return_exceptions=True,
    )
    for (position, _, _), outcome in zip(todo, outcomes, strict=True):
        if isinstance(outcome, Exception):
            fail(position, outcome)
    return failures


async def _fail(record: MemoryRecord, job: JobRecord | None, reason: str) -> None:
    """The last delivery failed: the memory stays (searchable by its text) with the reason."""
    logger.warning("memory enrichment failed", memory_id=record.id, reason=reason)
    count("EnrichmentFailed")
    failed = (
        None if job is None else jobs.advanced(job, "failed", "enrichment failed", error=reason)
    )
    with contextlib.suppress(SupersededError):
        await _save(record, {"status": "failed", "error": reason, "updated_at": utcnow()}, failed)
