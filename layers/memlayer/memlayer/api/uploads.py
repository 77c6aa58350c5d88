"""Uploads (`/v1/uploads`): the declared file, its presigned ticket, its status."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import Field, field_validator

from memlayer.api.common import Body
from memlayer.content.files import ALLOWED_CONTENT_TYPES, normalize_content_type
from memlayer.lazy_model import LazyModel
from memlayer.models import Timestamp
from memlayer.storage.uploads import UploadRecord, UploadStatus


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


class UploadTicket(LazyModel):
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


class Upload(LazyModel):
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
