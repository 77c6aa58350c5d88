"""Stored records (what storage keeps) and the value types they share with the API.

The request and response bodies are in `memlayer.api`. They are separate on purpose: a stored
record carries bookkeeping (hashes, usage, embedding space) that the API does not show, and the
API can evolve without a data migration. `Limits`, `UsageCounts` and `ListQuery` are both: a
profile's stored counters and the filters a memory listing takes, which the API shows or
accepts as they are."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
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
from memlayer.lazy_model import LazyModel
from memlayer.text import truncate, unstorable

Kind = Literal["note", "prompt", "response", "exchange", "share", "file"]
MemoryStatus = Literal["pending", "processing", "ready", "failed"]
JobStatus = Literal["queued", "analyzing", "embedding", "completed", "failed"]
JobKind = Literal["enrich", "export"]


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


def stored_size(text: str) -> int:
    """Bytes `text` takes as stored: UTF-8 inside a JSON document, escapes included (a
    control character is 1 byte in the request and 6 in the record)."""
    return len(to_json(text)) - 2


def truncate_stored(text: str, limit: int) -> str:
    """The longest prefix of `text` whose stored size is at most `limit`."""
    return truncate(text, limit, stored_size)


ShortText = Annotated[str, Field(max_length=2_000)]


class Source(LazyModel):
    url: ShortText | None = None
    canonical_url: ShortText | None = None
    title: Annotated[str, Field(max_length=500)] | None = None
    provider: Annotated[str, Field(max_length=64)] | None = None
    conversation_id: Annotated[str, Field(max_length=256)] | None = None


def display_title(analysis: Analysis | None, source: Source) -> str | None:
    """A memory's title wherever it is shown: the analysis's, else the page it came from."""
    return (analysis.title if analysis else None) or source.title


class Usage(LazyModel):
    input_tokens: int = 0
    output_tokens: int = 0
    provider_calls: int = 0


class MemoryRecord(LazyModel):
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


class ListQuery(LazyModel):
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = None
    kind: Kind | None = None
    tag: str | None = None
    provider: str | None = None
    status: MemoryStatus | None = None
    since: Moment | None = None
    until: Moment | None = None

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problem = unstorable(data)
        if problem is not None:
            raise ValueError(problem)
        return data

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        return normalize_tag(value) if value else value


class JobRecord(LazyModel):
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


class Limits(LazyModel):
    daily_writes: int = Field(ge=0)
    max_memories: int = Field(ge=0)
    max_bytes: int = Field(ge=0)

    def overridden(self, override: Mapping[str, int]) -> Limits:
        """These (the defaults) with the user's own limits, set by an admin, in their place."""
        return Limits(**{**self.model_dump(), **override})


class UsageCounts(LazyModel):
    memories: int = 0
    bytes: int = 0
    writes_today: int = 0
