"""Who is calling: a Supabase JWT or a memlayer API key (`mlk_…`), resolved to a Principal.

FastAPI dependencies: `current_user` (any valid credential), `writer` (needs the write scope),
`admin` (needs the admin role; everyone else sees 404 so admin paths do not advertise)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from fastapi import Depends, Request

from memlayer.errors import Forbidden, NotFound, Unauthorized
from memlayer.settings import get_settings

API_KEY_PREFIX = "mlk_"


@dataclass(frozen=True)
class Principal:
    user_id: str
    scopes: frozenset[str]
    is_admin: bool = False
    via: str = "jwt"
    key_id: str | None = None
    expires_at: float | None = None  # a token's `exp`; API keys live until revoked


@lru_cache(maxsize=1)
def _verifier():  # type: ignore[no-untyped-def]
    from memlayer.auth.jwt import JwtVerifier

    return JwtVerifier.from_settings(get_settings())


async def authenticate(authorization: str | None) -> Principal:
    if not authorization:
        raise Unauthorized("missing bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    if token.startswith(API_KEY_PREFIX):
        from memlayer.services.api_keys import authenticate_api_key

        return await authenticate_api_key(token)
    verified = await _verifier().verify(token)
    return Principal(
        user_id=verified.subject,
        scopes=frozenset({"read", "write"}),
        is_admin=verified.is_admin,
        expires_at=float(verified.claims["exp"]),
    )


async def current_user(request: Request) -> Principal:
    principal = await authenticate(request.headers.get("authorization"))
    from memlayer.services.limits import check_rate

    await check_rate(principal.user_id, request)
    return principal


async def writer(principal: Principal = Depends(current_user)) -> Principal:
    if "write" not in principal.scopes:
        raise Forbidden("this API key is read-only")
    return principal


async def admin(request: Request) -> Principal:
    try:
        principal = await authenticate(request.headers.get("authorization"))
    except Unauthorized:
        raise NotFound("not found") from None
    if not principal.is_admin:
        raise NotFound("not found")
    return principal
