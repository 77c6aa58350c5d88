"""Uploads: presigned upload tickets, upload status, and the extract worker's step.

The flow: `POST /v1/uploads` checks the declared file and answers a presigned form for one key,
`uploads/<user>/<upload_id>/<safe file name>`, and the upload record (status `awaiting`). The
browser sends the file straight to the bucket; S3 notifies the uploads queue, and the extract
worker calls `handle_object_created`: it finds the upload by the user and upload id in the key
(the record must exist in that user's partition and name exactly that key), checks the file is
what it claims to be (magic bytes, text decoding, markup), extracts its text and writes one
`file` memory, which goes through the usual enrichment. A file that cannot become a memory
marks the upload `failed` with a reason the user can read, and its object is deleted.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, Field, field_validator

from memlayer import blobs
from memlayer.errors import NotFound, PayloadTooLarge, QuotaExceeded, ValidationFailed
from memlayer.ids import new_id, utcnow
from memlayer.models import Body, Source, Timestamp, truncate_stored
from memlayer.observability import logger
from memlayer.pipeline.extract import extract_page
from memlayer.services import memories
from memlayer.services.limits import limits_of, quota_exceeded
from memlayer.settings import get_settings
from memlayer.storage import get_store
from memlayer.storage.base import VersionConflict
from memlayer.storage.errors import LimitReached, seconds_to_midnight
from memlayer.storage.uploads import UploadRecord, UploadsStore, UploadStatus

ALLOWED_CONTENT_TYPES: frozenset[str] = frozenset(
    {"text/plain", "text/markdown", "text/html", "application/pdf"}
)
_CONTENT_TYPE_ALIASES = {
    "text/x-markdown": "text/markdown",
    "application/x-pdf": "application/pdf",
}
# A worker that took an upload and then vanished (crash, timeout) is presumed dead after this;
# a redelivered message then takes the upload over.
CLAIM_LEASE = timedelta(minutes=5)
# A failed upload's object is deleted; every other state can still become (or is) a file.
ATTACHABLE_STATUSES: frozenset[str] = frozenset({"awaiting", "received", "extracting", "completed"})


# ---------------------------------------------------------------------------- API bodies


def normalize_content_type(value: str) -> str:
    base = value.split(";", 1)[0].strip().lower()
    return _CONTENT_TYPE_ALIASES.get(base, base)


class UploadCreate(Body):
    filename: Annotated[str, Field(min_length=1, max_length=255)]
    content_type: Annotated[str, Field(min_length=1, max_length=255)]
    size: Annotated[int, Field(ge=1, description="bytes; at most the ticket's max_bytes")]

    @field_validator("filename")
    @classmethod
    def _filename(cls, value: str) -> str:
        value = value.strip()
        if any(unicodedata.category(ch) == "Cc" for ch in value):
            raise ValueError("filename must not contain control characters")
        if not value.strip(". "):
            raise ValueError("filename must name a file")
        return value

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, value: str) -> str:
        normalized = normalize_content_type(value)
        if normalized not in ALLOWED_CONTENT_TYPES:
            allowed = ", ".join(sorted(ALLOWED_CONTENT_TYPES))
            raise ValueError(f"content_type must be one of {allowed}")
        return normalized


class UploadTicket(BaseModel):
    """A presigned upload. POST (S3): send a multipart form with every `fields` entry, then
    the file as the last part named `file`. PUT (R2): send the file as the body with
    `headers`."""

    upload_id: str
    url: str
    fields: dict[str, str]
    expires_at: Timestamp
    max_bytes: int
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = {}
    status_url: str


class Upload(BaseModel):
    """An upload as the API shows it."""

    upload_id: str
    status: UploadStatus
    memory_id: str | None = None
    error: str | None = None
    filename: str
    content_type: str
    size: int
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, record: UploadRecord) -> Upload:
        return cls(
            upload_id=record.id,
            status=record.status,
            memory_id=record.memory_id,
            error=record.error,
            filename=record.filename,
            content_type=record.content_type,
            size=record.received_size if record.received_size is not None else record.size,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


# ---------------------------------------------------------------------------- keys


def uploads_store() -> UploadsStore:
    """The store, as far as uploads go."""
    return get_store()


# ---------------------------------------------------------------------------- API


async def create_upload(user_id: str, body: UploadCreate) -> UploadTicket:
    settings = get_settings()
    if body.size > settings.upload_max_bytes:
        raise PayloadTooLarge(
            f"the file is {body.size} bytes; the limit is {settings.upload_max_bytes}"
        )
    await _check_quota(user_id)
    upload_id = new_id()
    key = blobs.object_key(user_id, upload_id, body.filename)
    presigned = await blobs.presign_upload(
        key,
        content_type=body.content_type,
        size=body.size,
        max_bytes=settings.upload_max_bytes,
        expires_in=settings.upload_url_expires_seconds,
    )
    now = utcnow()
    await uploads_store().put_upload(
        UploadRecord(
            user_id=user_id,
            id=upload_id,
            filename=body.filename,
            content_type=body.content_type,
            size=body.size,
            key=key,
            created_at=now,
            updated_at=now,
            url_expires_at=presigned.expires_at,
            # No file ever came: the record expires (after the form did, so none can follow).
            purge_after=presigned.expires_at + timedelta(hours=settings.orphan_upload_hours),
        )
    )
    return UploadTicket(
        upload_id=upload_id,
        url=presigned.url,
        fields=presigned.fields,
        expires_at=presigned.expires_at,
        max_bytes=settings.upload_max_bytes,
        method=presigned.method,
        headers=presigned.headers,
        status_url=f"/v1/uploads/{upload_id}",
    )


async def _check_quota(user_id: str) -> None:
    """Refuses a ticket up front when the memory it would become cannot be written today."""
    profile = await get_store().get_profile(user_id)
    limits = limits_of(profile)
    usage = profile.usage
    if limits.daily_writes and usage.writes_today >= limits.daily_writes:
        raise quota_exceeded(
            LimitReached("daily_writes", retry_after=seconds_to_midnight(utcnow()))
        )
    if limits.max_memories and usage.memories >= limits.max_memories:
        raise quota_exceeded(LimitReached("max_memories", retry_after=3600))
    if limits.max_bytes and usage.bytes >= limits.max_bytes:
        raise quota_exceeded(LimitReached("max_bytes", retry_after=3600))


async def get_upload(user_id: str, upload_id: str) -> Upload:
    record = await uploads_store().get_upload(user_id, upload_id)
    if record is None:
        raise NotFound("upload not found")
    return Upload.of(record)


async def require_uploads(user_id: str, upload_ids: list[str]) -> list[UploadRecord]:
    """The caller's uploads with these ids, for attaching to a share: NotFound (404) if any is
    missing or another user's, ValidationFailed (422) if one failed (its file is gone)."""
    store = uploads_store()
    records = await asyncio.gather(*(store.get_upload(user_id, i) for i in upload_ids))
    missing = [i for i, record in zip(upload_ids, records, strict=True) if record is None]
    if missing:
        raise NotFound(f"upload not found: {', '.join(missing)}")
    found = [record for record in records if record is not None]
    failed = [record.id for record in found if record.status not in ATTACHABLE_STATUSES]
    if failed:
        raise ValidationFailed(
            [
                {
                    "loc": ["body", "upload_ids"],
                    "msg": f"upload {upload_id} failed and cannot be attached",
                    "type": "upload_state",
                }
                for upload_id in failed
            ]
        )
    return found


# ---------------------------------------------------------------------------- S3 events


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str  # decoded
    size: int


def parse_s3_event(body: str) -> list[ObjectCreated]:
    """The ObjectCreated records of an S3 notification (an SQS message body). The test event
    S3 sends when notifications are configured, and other events, give none. Keys in S3
    notifications are URL-encoded (spaces as '+'); they are decoded here. Raises ValueError
    on a body that is not an S3 notification."""
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ValueError("not an S3 notification")
    if message.get("Event") == "s3:TestEvent":
        return []
    if "Records" not in message or not isinstance(message["Records"], list):
        raise ValueError("not an S3 notification: no Records")
    found = []
    for record in message["Records"]:
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        try:
            s3 = record["s3"]
            found.append(
                ObjectCreated(
                    bucket=str(s3["bucket"]["name"]),
                    key=unquote_plus(str(s3["object"]["key"])),
                    size=int(s3["object"].get("size", 0)),
                )
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError("not an S3 notification: malformed record") from None
    return found


class UploadBusy(Exception):
    """Another worker holds the upload; the message is retried later."""


class ExtractionFailed(Exception):
    """The file cannot become a memory; `reason` is shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def handle_object_created(
    bucket: str, key: str, size: int, *, final: bool = False
) -> UploadRecord | None:
    """Turns an uploaded object into a `file` memory. Idempotent: a completed or failed upload
    is left alone, and the memory is created with an idempotency key, so a redelivery after a
    crash finds the first memory. Returns the upload as left, or None when the object is not
    an upload's (it is ignored). Raises UploadBusy while another worker holds the upload, and
    anything unexpected (SQS retries); on the `final` delivery an unexpected error marks the
    upload failed instead."""
    settings = get_settings()
    if bucket != settings.uploads_bucket:
        logger.warning("object in another bucket ignored", bucket=bucket, key=key)
        return None
    parsed = blobs.parse_key(key)
    if parsed is None:
        logger.info("object outside uploads ignored", key=key)
        return None
    user_id, upload_id = parsed
    store = uploads_store()
    record = await store.get_upload(user_id, upload_id)
    if record is None or record.key != key:
        # Never trust the key: the upload must exist in that user's partition, for that key.
        logger.warning("object without a matching upload ignored", key=key)
        return None
    if record.status in ("completed", "failed"):
        return record
    now = utcnow()
    if record.status != "awaiting" and now - record.updated_at < CLAIM_LEASE:
        raise UploadBusy(f"upload {upload_id} is being processed")
    try:
        record = await store.update_upload(
            record.model_copy(
                update={
                    "status": "received",
                    "received_size": size,
                    "updated_at": now,
                    "purge_after": None,
                }
            ),
            expected_version=record.version,
        )
    except VersionConflict:
        raise UploadBusy(f"upload {upload_id} was taken by another worker") from None
    try:
        blob = await _fetch(record)
        record = await _save(record, status="extracting", received_size=blob.size)
        extracted = await extract(blob.data, record.content_type)
        memory_id = await _create_memory(record, blob, extracted)
    except ExtractionFailed as exc:
        return await _fail(record, exc.reason)
    except Exception as exc:
        if not final:
            raise
        logger.exception("upload failed on its last delivery", upload_id=upload_id)
        return await _fail(record, f"the file could not be processed ({type(exc).__name__})")
    return await _save(record, status="completed", memory_id=memory_id, error=None)


async def _fetch(record: UploadRecord) -> blobs.Blob:
    """The uploaded object, checked against what the ticket allowed."""
    limit = get_settings().upload_max_bytes
    if record.received_size is not None and record.received_size > limit:
        raise ExtractionFailed(f"the file is {record.received_size} bytes; the limit is {limit}")
    blob = await blobs.get_bytes(record.key, max_bytes=limit)
    if blob is None:
        raise ExtractionFailed("the uploaded file is gone")
    if blob.truncated:
        raise ExtractionFailed(f"the file is {blob.size} bytes; the limit is {limit}")
    if blob.size == 0:
        raise ExtractionFailed("the file is empty")
    stored_type = normalize_content_type(blob.content_type or "")
    if stored_type != record.content_type:
        raise ExtractionFailed(
            f"the file was sent as {stored_type or 'no type'}, not {record.content_type}"
        )
    return blob


async def _create_memory(record: UploadRecord, blob: blobs.Blob, extracted: Extracted) -> str:
    """Writes the `file` memory (once: a redelivery finds the first one by its idempotency
    key); returns its id."""
    text, truncated = _fit(extracted.text, get_settings().max_content_bytes)
    metadata: dict[str, Any] = {
        "upload_id": record.id,
        "filename": record.filename,
        "content_type": record.content_type,
        "size": blob.size,
        **extracted.metadata,
    }
    if truncated:
        metadata["truncated"] = True
    try:
        created = await memories.create(
            record.user_id,
            memories.Draft(
                content=text,
                kind="file",
                source=Source(title=record.filename[:500]),
                metadata=metadata,
                upload_ids=[record.id],
            ),
            idempotency_key=f"upload-{record.id}",
            idempotency_scope="uploads",
            request_body={"upload_id": record.id},
        )
    except QuotaExceeded as exc:
        raise ExtractionFailed(f"the memory could not be saved: {exc.detail}") from None
    return created.memory.id


async def _save(record: UploadRecord, **changes: Any) -> UploadRecord:
    return await uploads_store().update_upload(
        record.model_copy(update={**changes, "updated_at": utcnow()}),
        expected_version=record.version,
    )


async def _fail(record: UploadRecord, reason: str) -> UploadRecord:
    logger.info("upload failed", upload_id=record.id, reason=reason)
    try:
        await blobs.delete_prefix(blobs.upload_prefix(record.user_id, record.id))
    except Exception:
        logger.exception("could not delete a failed upload's object", upload_id=record.id)
    days = get_settings().job_ttl_days
    return await _save(
        record, status="failed", error=reason, purge_after=utcnow() + timedelta(days=days)
    )


def _fit(text: str, limit: int) -> tuple[str, bool]:
    fitted = truncate_stored(text, limit)
    return fitted, len(fitted) < len(text)


# ---------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class Extracted:
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "PDF"),
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"PK\x03\x04", "ZIP archive (e.g. .docx, .xlsx)"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy Office document"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\x7fELF", "program"),
    (b"MZ", "Windows program"),
)
_TEXT_CONTROLS = frozenset("\t\n\r\f\v\x1b")


def sniff(data: bytes) -> str | None:
    """What a file is by its first bytes, for the kinds that are never text; None otherwise.
    A PDF may have up to 1 KiB of junk before `%PDF-` (as readers allow)."""
    if b"%PDF-" in data[:1024]:
        return "PDF"
    for magic, name in _SIGNATURES[1:]:
        if data.startswith(magic):
            return name
    if data[:12].startswith(b"RIFF") and data[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return "media file"
    return None


def decode_text(data: bytes) -> str:
    """Text of a file that claims to be text: UTF-8 (a BOM is dropped), UTF-16 with a BOM,
    else Windows-1252/Latin-1; refused when it holds NUL bytes or many control characters
    (it is binary)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise ExtractionFailed("the file is not valid UTF-16 text") from None
    elif b"\x00" in data:
        raise ExtractionFailed("the file is binary, not text")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
    controls = sum(
        1 for ch in text if ch not in _TEXT_CONTROLS and unicodedata.category(ch) == "Cc"
    )
    if controls > max(8, len(text) // 100):
        raise ExtractionFailed("the file is binary, not text")
    return text


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return re.sub(r"\n{4,}", "\n\n\n", text).strip()


def _pdf_text(data: bytes, budget: int) -> Extracted:
    # lazy: pypdf (~0.4 s) is needed only by the extract worker, never on an HTTP cold start
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = bool(reader.decrypt(""))  # NOT_DECRYPTED is 0
            except Exception:
                opened = False
            if not opened:
                raise ExtractionFailed("the PDF is password-protected")
        pages = reader.pages
        parts: list[str] = []
        collected = 0
        for page in pages:
            text = page.extract_text() or ""
            parts.append(text)
            collected += len(text.encode())
            if collected > budget:  # the memory keeps only so much; skip reading the rest
                break
        page_count = len(pages)
    except ExtractionFailed:
        raise
    except Exception as exc:  # pypdf raises many kinds on malformed files
        raise ExtractionFailed(f"the PDF could not be read ({type(exc).__name__})") from None
    text = _clean("\n\n".join(parts))
    if not text:
        raise ExtractionFailed(
            "the PDF has no extractable text (scanned pages are images; OCR is not supported)"
        )
    return Extracted(text=text, metadata={"pages": page_count})


def _text_file(data: bytes, content_type: str) -> str:
    kind = sniff(data)
    if kind is not None:
        raise ExtractionFailed(f"the file was declared {content_type} but is a {kind}")
    return decode_text(data)


_MARKUP = re.compile(r"<\s*(?:!doctype|html|head|body|[a-z][a-z0-9-]*[\s/>])", re.IGNORECASE)


async def _html(html: str) -> Extracted:
    if not _MARKUP.search(html[:65_536]):
        raise ExtractionFailed("the file was declared text/html but has no HTML markup")
    if inspect.iscoroutinefunction(extract_page):
        page = await extract_page(html, "")
    else:
        page = await asyncio.to_thread(extract_page, html, "")
    text = _clean(page.text)
    if not text:
        raise ExtractionFailed("the HTML page has no readable text")
    metadata = {
        name: value
        for name, value in (("title", page.title), ("description", page.description))
        if value
    }
    return Extracted(text=text, metadata=metadata)


async def extract(data: bytes, content_type: str) -> Extracted:
    """The text of an uploaded file, after checking it is what `content_type` claims.
    Raises ExtractionFailed with a reason the user can read."""
    content_type = normalize_content_type(content_type)
    if content_type == "application/pdf":
        kind = sniff(data)
        if kind != "PDF":
            what = f"a {kind}" if kind else "text or an unknown format"
            raise ExtractionFailed(f"the file was declared application/pdf but is {what}")
        budget = get_settings().max_content_bytes
        return await asyncio.to_thread(_pdf_text, data, budget)
    if content_type not in ALLOWED_CONTENT_TYPES:
        raise ExtractionFailed(f"{content_type} files are not supported")
    text = await asyncio.to_thread(_text_file, data, content_type)
    if content_type == "text/html":
        return await _html(text)
    text = _clean(text)
    if not text:
        raise ExtractionFailed("the file has no text")
    return Extracted(text=text)
