"""Request/response bodies (what the API speaks) and stored records (what storage keeps).

They are separate on purpose: a stored record carries bookkeeping (hashes, usage, embedding
space) that the API does not show, and the API can evolve without a data migration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import to_json

from memlayer.ai.analysis import Analysis
from memlayer.ai.tags import normalize_tag
from memlayer.settings import get_settings
from memlayer.text import truncate

Kind = Literal["note", "prompt", "response", "exchange", "share", "file"]
MemoryStatus = Literal["pending", "processing", "ready", "failed"]
JobStatus = Literal["queued", "analyzing", "embedding", "completed", "failed"]
JobKind = Literal["enrich", "export"]
SearchMode = Literal["hybrid", "semantic", "keyword"]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


Timestamp = Annotated[AwareDatetime, AfterValidator(_utc), PlainSerializer(_iso, return_type=str)]

# The moments a request may name (occurred_at, since, until). Every one of them survives the
# conversions the system applies: to UTC from any offset (±24 h), to epoch seconds, and into
# a ULID's 48-bit millisecond timestamp (ULIDs cannot express times before 1970).
MIN_MOMENT = datetime(1970, 1, 1, tzinfo=UTC)
MAX_MOMENT = datetime(9999, 12, 30, tzinfo=UTC)
_MOMENT_RANGE = f"from {_iso(MIN_MOMENT)} to {_iso(MAX_MOMENT)}"
_aware_datetime: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


def _moment(value: Any) -> datetime:
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 date-time string with a time zone")
    try:
        parsed = _aware_datetime.validate_python(value)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from None
    try:
        moment = parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"must lie {_MOMENT_RANGE}") from None
    if not MIN_MOMENT <= moment <= MAX_MOMENT:
        raise ValueError(f"must lie {_MOMENT_RANGE}")
    return moment


Moment = Annotated[
    datetime,
    PlainValidator(_moment),
    PlainSerializer(_iso, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": f"ISO 8601 with a time zone, {_MOMENT_RANGE}",
        }
    ),
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


MAX_METADATA_DEPTH = 8
# Any request body: deeper JSON than this is no document anyone means to send.
MAX_BODY_DEPTH = 32


def _depth(value: Any) -> int:
    """How deeply `value` nests (a scalar is 0, `{}` is 1), without recursion; counting stops
    past MAX_BODY_DEPTH."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if not isinstance(node, dict | list):
            continue
        deepest = max(deepest, level)
        if level > MAX_BODY_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node
        stack += [(child, level + 1) for child in children]
    return deepest


def _unpaired_surrogate(value: Any) -> list[str | int] | None:
    """Where `value` holds a string with an unpaired UTF-16 surrogate (JSON can carry one as
    an escape; no storage can encode it), or None."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return loc
        elif isinstance(node, dict):
            stack += [(key, loc) for key in node]
            stack += [(child, [*loc, str(key)]) for key, child in node.items()]
        elif isinstance(node, list):
            stack += [(child, [*loc, index]) for index, child in enumerate(node)]
    return None


def stored_size(text: str) -> int:
    """Bytes `text` takes as stored: UTF-8 inside a JSON document, escapes included (a
    control character is 1 byte in the request and 6 in the record)."""
    return len(to_json(text)) - 2


def truncate_stored(text: str, limit: int) -> str:
    """The longest prefix of `text` whose stored size is at most `limit`."""
    return truncate(text, limit, stored_size)


def _check_metadata_depth(metadata: Any) -> Any:
    if isinstance(metadata, dict) and _depth(metadata) > MAX_METADATA_DEPTH:
        raise ValueError(f"metadata nests at most {MAX_METADATA_DEPTH} levels deep")
    return metadata


def _check_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    limit = get_settings().max_metadata_bytes
    if len(to_json(metadata)) > limit:
        raise ValueError(f"metadata is at most {limit} bytes as stored JSON")
    return metadata


def _check_content(content: str) -> str:
    if not content.strip():
        raise ValueError("content must not be blank")
    limit = get_settings().max_content_bytes
    size = stored_size(content)
    if size > limit:
        raise ValueError(f"content is {size} bytes as stored; the limit is {limit}")
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
Metadata = Annotated[
    dict[str, Any], BeforeValidator(_check_metadata_depth), AfterValidator(_check_metadata)
]
Content = Annotated[str, AfterValidator(_check_content)]
ShortText = Annotated[str, Field(max_length=2_000)]


class Body(BaseModel):
    """Base of request bodies: unknown fields are ignored (older extension builds send extras).

    Strict: `true` is no integer and `"5"` no number. Every string must be encodable (no
    unpaired surrogates) and no body nests deeper than MAX_BODY_DEPTH; both are checked on
    the raw body, before any field, so every route refuses them the same way (422)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _encodable(cls, data: Any) -> Any:
        if _depth(data) > MAX_BODY_DEPTH:
            raise ValueError(f"the body nests more than {MAX_BODY_DEPTH} levels deep")
        where = _unpaired_surrogate(data)
        if where is not None:
            path = ".".join(str(part) for part in where) or "body"
            raise ValueError(f"{path}: a string holds an unpaired surrogate (not valid Unicode)")
        return data


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
    occurred_at: Moment | None = None


class MemoryPatch(Body):
    content: Content | None = None
    tags: Tags | None = None
    metadata: Metadata | None = None
    occurred_at: Moment | None = None


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
    since: Moment | None = None
    until: Moment | None = None

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
