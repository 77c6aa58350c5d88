"""API keys (`/v1/api-keys`): create (shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from memlayer.api.common import Body
from memlayer.lazy_model import LazyModel
from memlayer.models import Timestamp
from memlayer.storage.accounts import ApiKeyRecord

Scope = Literal["read", "write"]


class ApiKeyCreate(Body):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=2)] = ["read"]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("name must not be blank")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[Scope]) -> list[Scope]:
        # Writing implies reading; keep a canonical order.
        wanted = set(value) | {"read"}
        return [s for s in ("read", "write") if s in wanted]


class ApiKey(LazyModel):
    """A key as listed: everything but the key itself."""

    id: str
    name: str
    scopes: list[str]
    prefix: str
    created_at: Timestamp
    last_used_at: Timestamp | None = None
    revoked: bool = False
    revoked_at: Timestamp | None = None

    @classmethod
    def of(cls, record: ApiKeyRecord) -> ApiKey:
        return cls.model_validate(record.model_dump(exclude={"user_id"}))


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The key itself. Shown only in this response.")


class ApiKeyList(LazyModel):
    items: list[ApiKey]
