"""Exports: everything a user has remembered, as one zip (`memories.json` for machines,
`memories.md` for people), written to `exports/<user>/<job_id>.zip` in the uploads bucket (a
lifecycle rule expires it after 7 days) and handed out as a presigned download URL.

`start_export` (POST /v1/export) writes an `export` job and queues `{"type": "export",
"user_id", "job_id"}` on the tasks queue; the tasks worker calls `run_export`."""

from __future__ import annotations

import asyncio
import io
import json
import re
import tempfile
import zipfile
from datetime import datetime
from typing import IO, Any

from memlayer import blobs, queues
from memlayer.api.memories import Memory
from memlayer.errors import ServiceUnavailable
from memlayer.ids import iso, new_id, utcnow
from memlayer.messages import ExportTask
from memlayer.models import JobRecord, MemoryRecord, display_title
from memlayer.observability import logger
from memlayer.services import jobs
from memlayer.storage import get_store
from memlayer.storage.uploads import UploadRecord

EXPORT_FORMAT = "memlayer.export"
EXPORT_VERSION = 1


async def start_export(user_id: str) -> JobRecord:
    """Creates the export job and queues it; 503 if it cannot be queued (the job is marked
    failed, so it never looks stuck)."""
    now = utcnow()
    job = JobRecord(
        user_id=user_id,
        id=new_id(),
        kind="export",
        message="export queued",
        created_at=now,
        updated_at=now,
    )
    await get_store().put_job(job)
    try:
        await queues.send("tasks", ExportTask(user_id=user_id, job_id=job.id))
    except Exception:
        logger.exception("export not queued", job_id=job.id)
        await jobs.advance(job, "failed", "export failed", error="the export could not be queued")
        raise ServiceUnavailable("the export could not be queued; try again") from None
    return job


async def run_export(user_id: str, job_id: str) -> JobRecord | None:
    """Writes the zip and completes the job with its `download_url`; on any error the job is
    failed with the reason (not raised: a retry would redo the same work; the user can start
    another export). A completed job is left alone (redelivery). None if there is no such
    export job."""
    store = get_store()
    job = await store.get_job(user_id, job_id)
    if job is None or job.kind != "export":
        logger.warning("export job not found", job_id=job_id)
        return None
    if job.status == "completed":
        return job
    try:
        memories = await store.all_memories(user_id)
        job = job.model_copy(
            update={
                "progress": 0.1,
                "message": f"exporting {len(memories)} memories",
                "updated_at": utcnow(),
            }
        )
        await store.put_job(job)
        await jobs.notify(job)
        uploads = {u.id: u for u in await store.all_uploads(user_id)}
        exported_at = utcnow()
        key = blobs.export_key(user_id, job_id)
        with tempfile.TemporaryFile() as spool:
            await asyncio.to_thread(write_zip, spool, memories, uploads, exported_at)
            spool.seek(0)
            await blobs.put_file(key, spool, content_type="application/zip")
        url = await jobs.download_url(user_id, job_id, exported_at=exported_at)
    except Exception as exc:
        logger.exception("export failed", job_id=job_id)
        return await jobs.advance(
            job, "failed", "export failed", error=f"the export failed ({type(exc).__name__})"
        )
    return await jobs.advance(
        job, "completed", f"exported {len(memories)} memories", download_url=url
    )


# ---------------------------------------------------------------------------- the zip


def export_item(record: MemoryRecord, uploads: dict[str, UploadRecord]) -> dict[str, Any]:
    """One memory as exported: the API's `Memory` plus the files it came from."""
    item = Memory.of(record).model_dump(mode="json")
    item["size_bytes"] = record.size_bytes
    item["upload_ids"] = list(record.upload_ids)
    item["files"] = [
        {
            "upload_id": u.id,
            "filename": u.filename,
            "content_type": u.content_type,
            "size": u.received_size if u.received_size is not None else u.size,
        }
        for u in (uploads.get(i) for i in record.upload_ids)
        if u is not None
    ]
    return item


def write_zip(
    fileobj: IO[bytes],
    memories: list[MemoryRecord],
    uploads: dict[str, UploadRecord],
    exported_at: datetime,
) -> None:
    """Streams the export into `fileobj` (a memory at a time, so a large export never sits in
    memory twice)."""
    ordered = sorted(memories, key=lambda m: (m.created_at, m.id))
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with io.TextIOWrapper(
            archive.open("memories.json", "w", force_zip64=True), encoding="utf-8"
        ) as out:
            head = {
                "format": EXPORT_FORMAT,
                "version": EXPORT_VERSION,
                "exported_at": iso(exported_at),
                "count": len(ordered),
            }
            out.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "memories": [')
            for index, record in enumerate(ordered):
                out.write(",\n" if index else "\n")
                out.write(json.dumps(export_item(record, uploads), ensure_ascii=False))
            out.write("\n]}\n")
        with io.TextIOWrapper(
            archive.open("memories.md", "w", force_zip64=True), encoding="utf-8"
        ) as out:
            out.write("# memlayer export\n\n")
            out.write(f"Exported {iso(exported_at)} · {len(ordered)} memories\n")
            for record in ordered:
                out.write("\n---\n\n")
                out.write(markdown_item(record, uploads))


def _one_line(text: str, limit: int = 120) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def markdown_item(record: MemoryRecord, uploads: dict[str, UploadRecord]) -> str:
    analysis = record.analysis
    title = (
        display_title(record.analysis, record.source)
        or next((line for line in record.content.splitlines() if line.strip()), "")
        or record.id
    )
    lines = [f"## {_one_line(title)}", ""]
    facts = [
        f"**Kind:** {record.kind}",
        f"**Status:** {record.status}",
        f"**Occurred:** {iso(record.occurred_at)}",
        f"**Id:** `{record.id}`",
    ]
    lines.append("- " + " · ".join(facts))
    source = record.source
    where = []
    if source.url:
        where.append(f"<{source.url}>")
    if source.provider:
        where.append(source.provider)
    if source.conversation_id:
        where.append(f"conversation `{source.conversation_id}`")
    if where:
        lines.append("- **Source:** " + " · ".join(where))
    for upload_id in record.upload_ids:
        upload = uploads.get(upload_id)
        if upload is not None:
            lines.append(f"- **File:** {_one_line(upload.filename)} ({upload.content_type})")
    tags = list(dict.fromkeys([*record.tags, *(analysis.tags if analysis else [])]))
    if tags:
        lines.append("- **Tags:** " + ", ".join(tags))
    if analysis is not None:
        lines.append(f"- **Category:** {analysis.category} · **Sentiment:** {analysis.sentiment}")
        if analysis.key_topics:
            lines.append("- **Key topics:** " + ", ".join(analysis.key_topics))
    if record.error:
        lines.append(f"- **Error:** {_one_line(record.error)}")
    lines.append("")
    if analysis is not None and analysis.description:
        lines.extend(["> " + line for line in analysis.description.splitlines()] + [""])
    fence = _fence(record.content)
    lines.extend([f"{fence}text", record.content, fence, ""])
    return "\n".join(lines)
