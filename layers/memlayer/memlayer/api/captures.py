"""Captures from chat sites and shares (`/v1/captures`, `/v1/shares`), and the bodies of the
compatibility paths (`/save-prompt`, `/save-response`)."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from memlayer.api.common import Body, Content, UploadIds
from memlayer.lazy_model import LazyModel

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


ConversationId = Annotated[str, Field(min_length=1, max_length=256)]


Url = Annotated[str, Field(max_length=2_000)]


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return value


class CaptureIn(Body):
    role: Literal["prompt", "response"]
    provider: Name
    conversation_id: ConversationId
    text: Content
    url: Url | None = None
    message_id: Annotated[str, Field(max_length=256)] | None = None

    _url = field_validator("url")(lambda cls, v: _http_url(v))


class CaptureResult(LazyModel):
    status: Literal["pending", "saved"]
    paired: bool = False
    capture_id: str | None = None
    memory_id: str | None = None
    job_id: str | None = None


class ShareIn(Body):
    text: Content | None = None
    url: Url | None = None
    title: Annotated[str, Field(max_length=500)] | None = None
    upload_ids: UploadIds = []

    _url = field_validator("url")(lambda cls, v: _http_url(v))

    @model_validator(mode="after")
    def _something(self) -> ShareIn:
        if not (self.text or self.url or self.upload_ids):
            raise ValueError("a share needs text, url or upload_ids")
        return self


class ShareAccepted(LazyModel):
    job_id: str
    memory_id: str
    status_url: str
