"""API keys: `mlk_` + 32 random bytes (urlsafe), stored only as a SHA-256 hash.

A key is shown once, when created. It carries scopes (`read`, or `read` + `write`), never the
admin role, and cannot manage keys or erase the account (that needs a signed-in session:
a leaked key must not be able to mint more keys or lock its owner out). Revoked or unknown
keys answer 401. Another user's key is 404, like every other resource. `authenticate` resolves
any bearer credential (a Supabase JWT through `memlayer.auth`, or a key) to its Principal."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from memlayer.auth import API_KEY_PREFIX, Principal, verify_jwt
from memlayer.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from memlayer.ids import is_id, new_id, utcnow
from memlayer.models import Body, Timestamp
from memlayer.observability import logger
from memlayer.storage import get_store
from memlayer.storage.accounts import ApiKeyRecord

Scope = Literal["read", "write"]
MAX_ACTIVE_KEYS = 25
_MAX_KEY_CHARS = 128


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


class ApiKey(BaseModel):
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


class ApiKeyList(BaseModel):
    items: list[ApiKey]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


async def create_api_key(user_id: str, name: str, scopes: list[str]) -> tuple[ApiKeyRecord, str]:
    """Creates a key; returns its record and the key (the only time the key exists outside
    the caller's hands)."""
    try:
        body = ApiKeyCreate.model_validate({"name": name, "scopes": scopes})
    except ValidationError as exc:
        raise ValidationFailed(
            [{"loc": list(map(str, e["loc"])), "msg": e["msg"]} for e in exc.errors()]
        ) from None
    store = get_store()
    active = [k for k in await store.list_api_keys(user_id) if not k.revoked]
    if len(active) >= MAX_ACTIVE_KEYS:
        raise Conflict(f"at most {MAX_ACTIVE_KEYS} active API keys; revoke one first")
    key = new_key()
    record = ApiKeyRecord(
        user_id=user_id,
        id=new_id(),
        name=body.name,
        scopes=list(body.scopes),
        prefix=key[: len(API_KEY_PREFIX) + 6],
        created_at=utcnow(),
    )
    await store.create_api_key(record, hash_key(key))
    logger.info("api key created", key_id=record.id, scopes=record.scopes)
    return record, key


async def list_api_keys(user_id: str) -> list[ApiKeyRecord]:
    keys = await get_store().list_api_keys(user_id)
    return sorted(keys, key=lambda k: k.id, reverse=True)


async def revoke_api_key(user_id: str, key_id: str) -> None:
    """Revokes one of the user's keys; a key that is not theirs (or does not exist) is 404.
    Revoking an already revoked key is harmless."""
    if not is_id(key_id) or not await get_store().revoke_api_key(user_id, key_id, utcnow()):
        raise NotFound("API key not found")
    logger.info("api key revoked", key_id=key_id)


async def authenticate(authorization: str | None) -> Principal:
    """The caller of an `Authorization: Bearer …` header: a JWT or an API key; 401 otherwise."""
    if not authorization:
        raise Unauthorized("missing bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    if token.startswith(API_KEY_PREFIX):
        return await authenticate_api_key(token)
    return await verify_jwt(token)


async def authenticate_api_key(token: str) -> Principal:
    """Resolves an `mlk_` key to its owner; unknown, malformed or revoked keys are 401."""
    if not token.startswith(API_KEY_PREFIX) or len(token) > _MAX_KEY_CHARS:
        raise Unauthorized("invalid API key")
    store = get_store()
    record = await store.find_api_key(hash_key(token))
    if record is None or record.revoked:
        raise Unauthorized("invalid API key")
    now = utcnow()
    last = record.last_used_at
    if last is None or (now - last).total_seconds() >= 60:
        try:
            await store.touch_api_key(record.user_id, record.id, now)
        except Exception:  # bookkeeping only; never fails the request
            logger.warning("api key last-used update failed", key_id=record.id)
    return Principal(
        user_id=record.user_id,
        scopes=frozenset(record.scopes),
        is_admin=False,
        via="api_key",
        key_id=record.id,
    )
