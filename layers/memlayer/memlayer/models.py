"""Request/response bodies (what the API speaks) and stored records (what storage keeps).

They are separate on purpose: a stored record carries bookkeeping (hashes, usage, embedding
space) that the API does not show, and the API can evolve without a data migration."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)

from memlayer.ai.analysis import Analysis
from memlayer.ai.tags import normalize_tag
from memlayer.settings import get_settings

Kind = Literal["note", "prompt", "response", "exchange", "share", "file"]
MemoryStatus = Literal["pending", "processing", "ready", "failed"]
JobStatus = Literal["queued", "analyzing", "embedding", "completed", "failed"]
JobKind = Literal["enrich", "export"]
SearchMode = Literal["hybrid", "semantic", "keyword"]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(_utc),
    PlainSerializer(lambda v: v.isoformat().replace("+00:00", "Z"), return_type=str),
]


def _check_tags(tags: list[str]) -> list[str]:
    settings = get_settings()
    if len(tags) > settings.max_tags:
        raise ValueError(f"at most {settings.max_tags} tags")
    seen: dict[str, None] = {}
    for tag in tags:
        norm = normalize_tag(tag)
        if not norm:
            raise ValueError("tags must not be empty")
        if len(norm) > settings.max_tag_length:
            raise ValueError(f"a tag is at most {settings.max_tag_length} characters")
        seen.setdefault(norm, None)
    return list(seen)


def _check_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    limit = get_settings().max_metadata_bytes
    if len(json.dumps(metadata, separators=(",", ":")).encode()) > limit:
        raise ValueError(f"metadata is at most {limit} bytes as JSON")
    return metadata


def _check_content(content: str) -> str:
    if not content.strip():
        raise ValueError("content must not be blank")
    limit = get_settings().max_content_bytes
    size = len(content.encode("utf-8"))
    if size > limit:
        raise ValueError(f"content is {size} bytes; the limit is {limit}")
    return content


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("must not name the same id twice")
    return values


MAX_UPLOADS_PER_SHARE = 10
# An upload id as `POST /v1/uploads` issues it (a ULID): anything else cannot be the caller's.
UploadId = Annotated[str, Field(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$", min_length=26, max_length=26)]
UploadIds = Annotated[
    list[UploadId], Field(max_length=MAX_UPLOADS_PER_SHARE), AfterValidator(_unique)
]
Tags = Annotated[list[str], AfterValidator(_check_tags)]
Metadata = Annotated[dict[str, Any], AfterValidator(_check_metadata)]
Content = Annotated[str, AfterValidator(_check_content)]
ShortText = Annotated[str, Field(max_length=2_000)]


class Body(BaseModel):
    """Base of request bodies: unknown fields are ignored (older extension builds send extras)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class Source(BaseModel):
    url: ShortText | None = None
    canonical_url: ShortText | None = None
    title: Annotated[str, Field(max_length=500)] | None = None
    provider: Annotated[str, Field(max_length=64)] | None = None
    conversation_id: Annotated[str, Field(max_length=256)] | None = None


class MemoryCreate(Body):
    content: Content
    kind: Kind = "note"
    source: Source | None = None
    tags: Tags = []
    metadata: Metadata = {}
    occurred_at: Timestamp | None = None


class MemoryPatch(Body):
    content: Content | None = None
    tags: Tags | None = None
    metadata: Metadata | None = None
    occurred_at: Timestamp | None = None


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    provider_calls: int = 0


class MemoryRecord(BaseModel):
    """A memory as storage keeps it."""

    user_id: str
    id: str
    content: str
    kind: Kind
    status: MemoryStatus = "pending"
    source: Source = Source()
    tags: list[str] = []
    metadata: dict[str, Any] = {}
    analysis: Analysis | None = None
    occurred_at: Timestamp
    created_at: Timestamp
    updated_at: Timestamp
    version: int = 1
    content_hash: str
    size_bytes: int
    job_id: str | None = None
    error: str | None = None
    secrets_found: dict[str, int] = {}
    usage: Usage = Usage()
    embedding_space: str | None = None
    analyzed_hash: str | None = None
    embedded_hash: str | None = None
    upload_ids: list[str] = []


class Memory(BaseModel):
    """A memory as the API shows it."""

    id: str
    content: str
    kind: Kind
    status: MemoryStatus
    source: Source
    tags: list[str]
    metadata: dict[str, Any]
    analysis: Analysis | None
    occurred_at: Timestamp
    created_at: Timestamp
    updated_at: Timestamp
    version: int
    job_id: str | None = None
    error: str | None = None
    secrets_found: dict[str, int] = {}

    @classmethod
    def of(cls, record: MemoryRecord) -> Memory:
        return cls.model_validate(record.model_dump(exclude={"user_id"}), from_attributes=False)


class MemoryPage(BaseModel):
    items: list[Memory]
    next_cursor: str | None


class ListQuery(BaseModel):
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = None
    kind: Kind | None = None
    tag: str | None = None
    provider: str | None = None
    status: MemoryStatus | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        return normalize_tag(value) if value else value


class JobRecord(BaseModel):
    user_id: str
    id: str
    kind: JobKind = "enrich"
    memory_id: str | None = None
    status: JobStatus = "queued"
    progress: float = 0.0
    message: str = "queued"
    error: str | None = None
    download_url: str | None = None
    created_at: Timestamp
    updated_at: Timestamp
    stage_times: dict[str, Timestamp] = {}  # when each stage began


class Job(BaseModel):
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


class Limits(BaseModel):
    daily_writes: int = Field(ge=0)
    max_memories: int = Field(ge=0)
    max_bytes: int = Field(ge=0)


class LimitsPatch(Body):
    daily_writes: int | None = Field(None, ge=0)
    max_memories: int | None = Field(None, ge=0)
    max_bytes: int | None = Field(None, ge=0)


class UsageCounts(BaseModel):
    memories: int = 0
    bytes: int = 0
    writes_today: int = 0


class ErrorBody(BaseModel):
    error: str
    detail: Any
    request_id: str
