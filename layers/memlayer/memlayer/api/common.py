"""What every request body shares: the strict `Body` base, the checked field types (content,
tags, metadata, upload ids) and the error body every failure answers with."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import to_json

from memlayer.ai.tags import normalize_tag
from memlayer.lazy_model import LazyModel
from memlayer.models import stored_size
from memlayer.settings import get_settings
from memlayer.text import unstorable


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


class Body(LazyModel):
    """Base of request bodies: unknown fields are ignored (older extension builds send extras).

    Strict: `true` is no integer and `"5"` no number. Every string must be storable (no
    unpaired surrogates, no U+0000) and no body nests deeper than MAX_BODY_DEPTH; both are
    checked on the raw body, before any field, so every route refuses them the same way (422)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _encodable(cls, data: Any) -> Any:
        if _depth(data) > MAX_BODY_DEPTH:
            raise ValueError(f"the body nests more than {MAX_BODY_DEPTH} levels deep")
        problem = unstorable(data)
        if problem is not None:
            raise ValueError(problem)
        return data


class ErrorBody(LazyModel):
    error: str
    detail: Any
    request_id: str
